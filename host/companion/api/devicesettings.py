"""Settings waiting for a device's next sync, and the worker settings they come from.

The sync agent, after uploading a device's records::

    pending = pending_for(session, "W017")        # {config key: value} or None
    if pending:
        ...send CONFIG_SET(pending), read the device's config CRC...
        mark_applied(session, "W017", crc, applied=pending)

A worker's alert settings (``WORKER_SETTINGS``, device config keys of device/lib/config.py)
are kept per worker (:class:`companion.store.WorkerSettings`) and copied into the pending
config of every device the worker wears, now and whenever a device is assigned to them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from companion.store.models import Device, DeviceSettings, WorkerSettings, utc_now

# Settings a worker's profile controls: key -> (device default, absolute lo, absolute hi), as in
# the firmware's config SCHEMA (device/lib/config.py); the device refuses values outside them.
WORKER_SETTINGS: dict[str, tuple[int, int, int]] = {
    "alert_threshold_deg": (20, 5, 60),
    "alert_hold_s": (30, 5, 600),
    "quiet_start_min": (0, 0, 1439),
    "quiet_end_min": (0, 0, 1439),
    "alert_snooze_s": (1800, 60, 14400),
}


class SettingsError(ValueError):
    """A setting or limit is outside what is allowed."""


def _device(session: Session, device_id: str) -> Device:
    device = session.scalar(select(Device).where(Device.device_id == device_id))
    if device is None:
        raise LookupError(f"device {device_id!r} is not registered")
    return device


def _settings_row(session: Session, device: Device) -> DeviceSettings:
    row = session.get(DeviceSettings, device.id)
    if row is None:
        row = DeviceSettings(device_pk=device.id, pending_config=None)
        session.add(row)
    return row


def pending_for(session: Session, device_id: str) -> dict[str, Any] | None:
    """The config keys waiting for `device_id`'s next sync, or None when nothing waits."""
    device = _device(session, device_id)
    row = session.get(DeviceSettings, device.id)
    if row is None or not row.pending_config:
        return None
    return dict(row.pending_config)


def mark_applied(
    session: Session, device_id: str, config_crc: int, applied: dict[str, Any] | None = None
) -> None:
    """Record that the device applied its pending settings and now reports `config_crc`.

    `applied`: what the agent delivered.  If the pending settings changed meanwhile (someone
    edited them during the sync), the newer ones stay pending for the next sync.  Flushes."""
    device = _device(session, device_id)
    row = _settings_row(session, device)
    row.confirmed_config_crc = int(config_crc)
    row.applied_at = utc_now()
    if applied is None or row.pending_config == applied:
        row.pending_config = None
    session.flush()


def queue_for_device(session: Session, device: Device, values: dict[str, Any]) -> None:
    """Merge `values` into the device's pending config (flushes)."""
    if not values:
        return
    row = _settings_row(session, device)
    merged = dict(row.pending_config or {})
    merged.update(values)
    row.pending_config = merged
    row.updated_at = utc_now()
    session.flush()


def worker_settings(session: Session, worker_id: int) -> WorkerSettings:
    row = session.get(WorkerSettings, worker_id)
    if row is None:
        row = WorkerSettings(worker_id=worker_id, values={}, limits={})
        session.add(row)
        session.flush()
    return row


def effective_values(row: WorkerSettings) -> dict[str, int]:
    """Every worker setting: the stored value or the device default."""
    return {key: int(row.values.get(key, default)) for key, (default, _lo, _hi) in WORKER_SETTINGS.items()}


def effective_limits(row: WorkerSettings) -> dict[str, tuple[int, int]]:
    """The range the worker may choose from for each setting (default: the device's range)."""
    out = {}
    for key, (_default, lo, hi) in WORKER_SETTINGS.items():
        given = row.limits.get(key)
        out[key] = (int(given[0]), int(given[1])) if given else (lo, hi)
    return out


def validate_values(values: dict[str, int], limits: dict[str, tuple[int, int]] | None) -> None:
    """SettingsError unless every value is within the device range (and `limits`, if given)."""
    for key, value in values.items():
        if key not in WORKER_SETTINGS:
            raise SettingsError(f"unknown setting {key!r}")
        _default, lo, hi = WORKER_SETTINGS[key]
        if limits is not None:
            lo, hi = limits[key]
        if not lo <= value <= hi:
            who = "the limits your ergonomist set" if limits is not None else "the device's range"
            raise SettingsError(f"{key} must be within {lo}..{hi} ({who}), not {value}")


def validate_limits(limits: dict[str, tuple[int, int]]) -> None:
    for key, (lo, hi) in limits.items():
        if key not in WORKER_SETTINGS:
            raise SettingsError(f"unknown setting {key!r}")
        _default, abs_lo, abs_hi = WORKER_SETTINGS[key]
        if not abs_lo <= lo <= hi <= abs_hi:
            raise SettingsError(
                f"limits of {key} must satisfy {abs_lo} <= lo <= hi <= {abs_hi}, not {lo}..{hi}"
            )


def change_worker_settings(
    session: Session, worker_id: int, changes: dict[str, int], limits: dict[str, tuple[int, int]] | None
) -> list[str]:
    """Store `changes` to a worker's settings (absent keys stay) and queue them for every device
    the worker wears; returns those devices' ids.  `limits`: the worker's own (a wearer changing
    their settings), or None for the device's range (an ergonomist or admin).  SettingsError,
    with nothing changed, when a value is out of range.  Flushes, does not commit.

    The one way settings change: the API's PUT /api/workers/{id}/settings and the wearer's
    settings page (/me/settings) both call it."""
    validate_values(changes, limits)
    row = worker_settings(session, worker_id)
    row.values = {**row.values, **changes}
    row.updated_at = utc_now()
    session.flush()
    return push_worker_settings(session, worker_id)


def push_worker_settings(session: Session, worker_id: int) -> list[str]:
    """Queue the worker's stored settings for every device they wear; returns their device ids."""
    row = worker_settings(session, worker_id)
    devices = session.scalars(
        select(Device).where(Device.worker_id == worker_id).order_by(Device.device_id)
    ).all()
    for device in devices:
        queue_for_device(session, device, dict(row.values))
    return [d.device_id for d in devices]
