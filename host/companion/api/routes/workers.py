"""Workers: admins create them; ergonomists list their teams'; a worker sees themself."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Depends, HTTPException, Request, status
from sqlalchemy import select
from sqlalchemy.orm import Session

from companion.api.deps import Principal, current_principal, get_session, require_role, visible_worker
from companion.api.schemas import Id, WorkerIn, WorkerOut
from companion.store.models import Team, Worker

router = APIRouter(tags=["workers"])
admin_only = require_role("admin")


@router.get("/workers", response_model=list[WorkerOut])
def list_workers(
    principal: Principal = Depends(current_principal), session: Session = Depends(get_session)
) -> list[Worker]:
    query = select(Worker).order_by(Worker.id)
    if principal.role == "worker":
        query = query.where(Worker.id == principal.worker_id)
    elif principal.role == "ergonomist":
        query = query.where(Worker.team_id.in_(principal.team_ids))
    return list(session.scalars(query))


@router.post("/workers", response_model=WorkerOut, status_code=status.HTTP_201_CREATED)
def create_worker(
    body: WorkerIn,
    request: Request,
    _p: Principal = Depends(admin_only),
    session: Session = Depends(get_session),
) -> Worker:
    if body.team_id is not None and session.get(Team, body.team_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no team {body.team_id}")
    timezone = body.timezone or request.app.state.settings.default_timezone
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise HTTPException(422, f"unknown time zone {timezone!r}") from None
    worker = Worker(name=body.name, team_id=body.team_id, timezone=timezone)
    session.add(worker)
    session.commit()
    return worker


@router.get("/workers/{worker_id}", response_model=WorkerOut)
def get_worker(
    worker_id: Id, principal: Principal = Depends(current_principal), session: Session = Depends(get_session)
) -> Worker:
    return visible_worker(session, principal, worker_id)
