"""Devices: registration, assignment, keys (write-only), revocation; status for ergonomists."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, status
from sqlalchemy import select
from sqlalchemy.orm import Session

from companion.api import devicesettings
from companion.api.deps import Principal, can_see_worker, get_session, require_role
from companion.api.schemas import DeviceAssignIn, DeviceIn, DeviceKeyIn, DeviceOut
from companion.store.models import Device, DeviceSettings, Worker, utc_now

router = APIRouter(tags=["devices"])
admin_only = require_role("admin")
managers = require_role("ergonomist", "admin")
KEY_BYTES_MIN = 16
KEY_BYTES_MAX = 64


def parse_key(key_hex: str) -> bytes:
    """A device key from hex (16..64 bytes, as the firmware accepts); 422 otherwise."""
    try:
        key = bytes.fromhex(key_hex.strip())
    except ValueError:
        raise HTTPException(422, "key_hex is not hexadecimal") from None
    if not KEY_BYTES_MIN <= len(key) <= KEY_BYTES_MAX:
        raise HTTPException(
            422,
            f"a device key is {KEY_BYTES_MIN}..{KEY_BYTES_MAX} bytes, got {len(key)}",
        )
    return key


def device_out(session: Session, device: Device) -> DeviceOut:
    pending = session.get(DeviceSettings, device.id)
    return DeviceOut(
        device_id=device.device_id,
        worker_id=device.worker_id,
        has_key=device.key is not None,
        revoked=device.revoked_at is not None,
        last_sync=device.last_sync,
        battery_mv=device.battery_mv,
        battery_percent=device.battery_percent,
        contiguous_seq=device.contiguous_seq,
        settings_pending=bool(pending is not None and pending.pending_config),
        confirmed_config_crc=pending.confirmed_config_crc if pending is not None else None,
    )


def _device(session: Session, device_id: str) -> Device:
    device = session.scalar(select(Device).where(Device.device_id == device_id))
    if device is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no device {device_id!r}")
    return device


@router.get("/devices", response_model=list[DeviceOut])
def list_devices(
    principal: Principal = Depends(managers), session: Session = Depends(get_session)
) -> list[DeviceOut]:
    """Admin: every device; ergonomist: the devices of their teams' workers (last sync, battery)."""
    query = select(Device).order_by(Device.device_id)
    if principal.role != "admin":
        query = query.join(Worker, Device.worker_id == Worker.id).where(
            Worker.team_id.in_(principal.team_ids)
        )
    return [device_out(session, d) for d in session.scalars(query)]


@router.get("/devices/{device_id}", response_model=DeviceOut)
def get_device(
    device_id: str,
    principal: Principal = Depends(managers),
    session: Session = Depends(get_session),
) -> DeviceOut:
    device = _device(session, device_id)
    worker = session.get(Worker, device.worker_id) if device.worker_id is not None else None
    if principal.role != "admin" and (worker is None or not can_see_worker(principal, worker)):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"device {device_id!r} is not yours to see")
    return device_out(session, device)


@router.post("/devices", response_model=DeviceOut, status_code=status.HTTP_201_CREATED)
def register_device(
    body: DeviceIn, _p: Principal = Depends(admin_only), session: Session = Depends(get_session)
) -> DeviceOut:
    key = parse_key(body.key_hex)
    if session.scalar(select(Device.id).where(Device.device_id == body.device_id)) is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"device {body.device_id!r} is registered already")
    if body.worker_id is not None and session.get(Worker, body.worker_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no worker {body.worker_id}")
    device = Device(device_id=body.device_id, key=key, worker_id=body.worker_id)
    session.add(device)
    session.flush()
    if body.worker_id is not None:
        devicesettings.push_worker_settings(session, body.worker_id)
    out = device_out(session, device)
    session.commit()
    return out


@router.put("/devices/{device_id}/worker", response_model=DeviceOut)
def assign_device(
    device_id: str,
    body: DeviceAssignIn,
    _p: Principal = Depends(admin_only),
    session: Session = Depends(get_session),
) -> DeviceOut:
    """Give the device to a worker (null: unassign).  Their settings go to it at the next sync."""
    device = _device(session, device_id)
    if body.worker_id is not None and session.get(Worker, body.worker_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no worker {body.worker_id}")
    device.worker_id = body.worker_id
    session.flush()
    if body.worker_id is not None:
        devicesettings.push_worker_settings(session, body.worker_id)
    out = device_out(session, device)
    session.commit()
    return out


@router.put("/devices/{device_id}/key", response_model=DeviceOut)
def set_device_key(
    device_id: str,
    body: DeviceKeyIn,
    _p: Principal = Depends(admin_only),
    session: Session = Depends(get_session),
) -> DeviceOut:
    """Rotate the key (provision the same key on the device); also lifts a revocation."""
    device = _device(session, device_id)
    device.key = parse_key(body.key_hex)
    device.revoked_at = None
    out = device_out(session, device)
    session.commit()
    return out


@router.post("/devices/{device_id}/revoke", response_model=DeviceOut)
def revoke_device(
    device_id: str, _p: Principal = Depends(admin_only), session: Session = Depends(get_session)
) -> DeviceOut:
    """Refuse the device's uploads (lost or stolen) and forget its key until a new one is set."""
    device = _device(session, device_id)
    device.key = None
    device.revoked_at = utc_now()
    out = device_out(session, device)
    session.commit()
    return out
