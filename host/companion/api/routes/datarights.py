"""A worker's data rights: export everything about them, erase it (companion.datarights).

Who: the worker themself, and an admin (who acts on a worker's request, or for a worker without
a login).  An ergonomist may not: the data is the worker's, and they already read what their
work needs through the other endpoints."""

from __future__ import annotations

import tempfile
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, status
from fastapi.responses import JSONResponse, Response, StreamingResponse
from sqlalchemy.orm import Session

from companion import datarights
from companion.api.deps import Principal, current_principal, get_session
from companion.api.schemas import ErasureOut, Id, WorkerExportOut
from companion.store.models import Worker

router = APIRouter(tags=["data rights"])


def own_or_admin(session: Session, principal: Principal, worker_id: int) -> Worker:
    """The worker, if the caller is that worker or an admin: 404 when absent, 403 otherwise."""
    worker = session.get(Worker, worker_id)
    if worker is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no worker {worker_id}")
    if principal.role != "admin" and principal.worker_id != worker_id:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"only worker {worker_id} themself or an admin may do this with their data",
        )
    return worker


@router.get(
    "/workers/{worker_id}/export",
    response_model=WorkerExportOut,
    responses={200: {"content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}}}},
)
def export_worker(
    worker_id: Id,
    format: Literal["json", "zip"] = Query(
        "json", description="json: one document; zip: profile.json and CSVs"
    ),
    principal: Principal = Depends(current_principal),
    session: Session = Depends(get_session),
) -> Response:
    """Everything stored about the worker: profile, logins, sessions, devices, settings, daily
    exposure, task segments, minute summaries, events and the raw records."""
    own_or_admin(session, principal, worker_id)
    filename = f"posture-worker-{worker_id}"
    if format == "json":
        document: dict[str, Any] = datarights.export_worker(session, worker_id)
        return JSONResponse(
            WorkerExportOut.model_validate(document).model_dump(mode="json"),
            headers={"Content-Disposition": f'attachment; filename="{filename}.json"'},
        )
    spool = tempfile.SpooledTemporaryFile(max_size=16 * 1024 * 1024)  # closed by the response
    datarights.write_export_zip(session, worker_id, spool)
    spool.seek(0)
    return StreamingResponse(
        spool,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{filename}.zip"'},
    )


@router.delete("/workers/{worker_id}", response_model=ErasureOut)
def erase_worker(
    worker_id: Id, principal: Principal = Depends(current_principal), session: Session = Depends(get_session)
) -> ErasureOut:
    """Delete the worker and every row that belongs to them (their logins and sessions too);
    their devices are unassigned, their keys forgotten and revoked.  Cannot be undone."""
    own_or_admin(session, principal, worker_id)
    report = datarights.erase_worker(session, worker_id)
    session.commit()
    return ErasureOut(worker_id=worker_id, deleted=report.deleted, devices_revoked=report.devices_revoked)
