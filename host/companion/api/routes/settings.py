"""A worker's alert settings (delivered to their device at its next sync) and their limits."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException
from sqlalchemy import select
from sqlalchemy.orm import Session

from companion.api import devicesettings as ds
from companion.api.deps import Principal, current_principal, get_session, managed_worker, visible_worker
from companion.api.schemas import Id, Range, WorkerLimitsBody, WorkerSettingsBody, WorkerSettingsOut
from companion.store.models import Device, utc_now

router = APIRouter(tags=["settings"])


def settings_out(session: Session, worker_id: int) -> WorkerSettingsOut:
    row = ds.worker_settings(session, worker_id)
    devices = session.scalars(
        select(Device.device_id).where(Device.worker_id == worker_id).order_by(Device.device_id)
    )
    return WorkerSettingsOut(
        worker_id=worker_id,
        values=ds.effective_values(row),
        limits={k: Range(lo=lo, hi=hi) for k, (lo, hi) in ds.effective_limits(row).items()},
        pending_devices=[d for d in devices if ds.pending_for(session, d)],
    )


@router.get("/workers/{worker_id}/settings", response_model=WorkerSettingsOut)
def get_settings(
    worker_id: Id, principal: Principal = Depends(current_principal), session: Session = Depends(get_session)
) -> WorkerSettingsOut:
    visible_worker(session, principal, worker_id)
    out = settings_out(session, worker_id)
    session.commit()
    return out


@router.put("/workers/{worker_id}/settings", response_model=WorkerSettingsOut)
def put_settings(
    worker_id: Id,
    body: WorkerSettingsBody,
    principal: Principal = Depends(current_principal),
    session: Session = Depends(get_session),
) -> WorkerSettingsOut:
    """Change settings (absent keys stay).  A worker may choose only within the limits their
    ergonomist set; an ergonomist or admin within the device's range."""
    visible_worker(session, principal, worker_id)
    row = ds.worker_settings(session, worker_id)
    limits = ds.effective_limits(row) if principal.role == "worker" else None
    try:
        ds.change_worker_settings(session, worker_id, body.model_dump(exclude_none=True), limits)
    except ds.SettingsError as exc:
        raise HTTPException(422, str(exc)) from None
    out = settings_out(session, worker_id)
    session.commit()
    return out


@router.put("/workers/{worker_id}/settings/limits", response_model=WorkerSettingsOut)
def put_limits(
    worker_id: Id,
    body: WorkerLimitsBody,
    principal: Principal = Depends(current_principal),
    session: Session = Depends(get_session),
) -> WorkerSettingsOut:
    """Set the ranges within which the worker may change each setting (ergonomist/admin)."""
    managed_worker(session, principal, worker_id)
    row = ds.worker_settings(session, worker_id)
    given = {k: (r["lo"], r["hi"]) for k, r in body.model_dump(exclude_none=True).items()}
    try:
        ds.validate_limits(given)
    except ds.SettingsError as exc:
        raise HTTPException(422, str(exc)) from None
    row.limits = {**row.limits, **{k: [lo, hi] for k, (lo, hi) in given.items()}}
    row.updated_at = utc_now()
    session.flush()
    out = settings_out(session, worker_id)
    session.commit()
    return out
