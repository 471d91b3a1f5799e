"""A worker's data rights: export everything stored about them, and erase it.

    document = export_worker(session, worker_id)             # JSON-ready dict
    write_export_zip(session, worker_id, fileobj)             # profile.json + one CSV per kind
    report = erase_worker(session, worker_id)                 # rows deleted per table (flushes)

What belongs to a worker (:func:`worker_rows` says it in SQL, once, for both):

- their ``workers`` row, their alert settings (``worker_settings``), their derived days
  (``daily_exposure``), their task segments (``task_segments``);
- their minute summaries and events (``worker_id``: whoever wore the device when it was
  ingested), and the raw ``records`` those were decoded from (same device and seq);
- their logins (``users`` with their ``worker_id``), those logins' sessions (``api_tokens``),
  team memberships and counted failed logins (``login_failures`` under the login's e-mail).

Erasing also takes the worker's devices out of service: they are unassigned, their key is
forgotten and they are marked revoked (so the next upload of what is still on the device is
refused, not stored under nobody), and their pending settings (the worker's) are dropped. The
device rows stay: a device is the organisation's, and gets a new key and wearer with
``PUT /api/devices/{id}/key`` and ``/worker``. Nothing else is touched: other workers' rows,
teams, tasks and policies stay as they were.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
import zipfile
from dataclasses import dataclass, field
from typing import IO, Any

from sqlalchemy import ColumnElement, and_, delete, exists, or_, select, union, update
from sqlalchemy.orm import Session

from companion.login_limits import account_key
from companion.store.models import (
    ApiToken,
    DailyExposure,
    Device,
    DeviceSettings,
    Event,
    LoginFailure,
    MinuteSummary,
    Record,
    Task,
    TaskSegment,
    Team,
    TeamMember,
    User,
    Worker,
    WorkerSettings,
    utc_now,
)

log = logging.getLogger("companion.datarights")

EXPORT_FORMAT = "posture-worker-export/1"


def _records_of(worker_id: int) -> ColumnElement[bool]:
    """Records decoded into one of the worker's minute summaries or events.

    The device_pk condition is implied by the two EXISTS, but stated, so that the database
    reads only the records of the devices the worker wore (through the (device_pk, seq) key)
    instead of testing every record in the table: a worker-year export or an erasure then costs
    the worker's rows, not the whole store's (docs/scale.md)."""
    worn = union(
        select(MinuteSummary.device_pk).where(MinuteSummary.worker_id == worker_id),
        select(Event.device_pk).where(Event.worker_id == worker_id),
    )
    minute = exists().where(
        MinuteSummary.device_pk == Record.device_pk,
        MinuteSummary.seq == Record.seq,
        MinuteSummary.worker_id == worker_id,
    )
    event = exists().where(
        Event.device_pk == Record.device_pk, Event.seq == Record.seq, Event.worker_id == worker_id
    )
    return and_(Record.device_pk.in_(worn), or_(minute, event))


def worker_rows(session: Session, worker_id: int) -> dict[str, ColumnElement[bool]]:
    """{table: the condition picking the worker's rows of it}: what export and erasure cover."""
    user_ids = select(User.id).where(User.worker_id == worker_id)
    emails = list(session.scalars(select(User.email).where(User.worker_id == worker_id)))
    return {
        "records": _records_of(worker_id),
        "minute_summaries": MinuteSummary.worker_id == worker_id,
        "events": Event.worker_id == worker_id,
        "daily_exposure": DailyExposure.worker_id == worker_id,
        "task_segments": TaskSegment.worker_id == worker_id,
        "worker_settings": WorkerSettings.worker_id == worker_id,
        "api_tokens": ApiToken.user_id.in_(user_ids),
        "team_members": TeamMember.user_id.in_(user_ids),
        "login_failures": LoginFailure.account.in_([account_key(e) for e in emails]),
        "users": User.worker_id == worker_id,
        "workers": Worker.id == worker_id,
    }


_TABLES: dict[str, Any] = {
    "records": Record,
    "minute_summaries": MinuteSummary,
    "events": Event,
    "daily_exposure": DailyExposure,
    "task_segments": TaskSegment,
    "worker_settings": WorkerSettings,
    "api_tokens": ApiToken,
    "team_members": TeamMember,
    "login_failures": LoginFailure,
    "users": User,
    "workers": Worker,
}


# ---- export --------------------------------------------------------------------------------------


def _iso(moment: dt.datetime | None) -> str | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)).isoformat()


def _device_ids(session: Session) -> dict[int, str]:
    return {pk: device_id for pk, device_id in session.execute(select(Device.id, Device.device_id))}


def _columns(model: Any) -> list[Any]:
    """A model's columns: selected as plain rows, a worker-year's quarter-million minute summaries,
    events and records export several times faster than as ORM objects (bench/scale.py)."""
    return list(model.__table__.c)


def export_worker(session: Session, worker_id: int) -> dict[str, Any]:
    """Everything stored about the worker, as one JSON-ready document (raw records as hex).
    KeyError when there is no such worker."""
    worker = session.get(Worker, worker_id)
    if worker is None:
        raise KeyError(worker_id)
    where = worker_rows(session, worker_id)
    devices = _device_ids(session)
    team = session.get(Team, worker.team_id) if worker.team_id is not None else None
    settings = session.get(WorkerSettings, worker_id)
    users = list(session.scalars(select(User).where(where["users"]).order_by(User.id)))
    tasks = {t.id: t for t in session.scalars(select(Task))}
    worn = sorted(
        {
            devices[pk]
            for pk in session.scalars(
                select(MinuteSummary.device_pk).where(where["minute_summaries"]).distinct()
            )
        }
        | {devices[pk] for pk in session.scalars(select(Event.device_pk).where(where["events"]).distinct())}
    )
    assigned = list(
        session.scalars(select(Device).where(Device.worker_id == worker_id).order_by(Device.device_id))
    )
    return {
        "format": EXPORT_FORMAT,
        "exported_at": _iso(utc_now()),
        "worker": {
            "id": worker.id,
            "name": worker.name,
            "team_id": worker.team_id,
            "team": team.name if team is not None else None,
            "timezone": worker.timezone,
        },
        "logins": [
            {
                "id": u.id,
                "email": u.email,
                "role": u.role,
                "active": u.active,
                "created_at": _iso(u.created_at),
            }
            for u in users
        ],
        "sessions": [
            {"user_id": t.user_id, "created_at": _iso(t.created_at), "expires_at": _iso(t.expires_at)}
            for t in session.scalars(select(ApiToken).where(where["api_tokens"]).order_by(ApiToken.id))
        ],
        "devices": {
            "assigned": [
                {
                    "device_id": d.device_id,
                    "last_sync": _iso(d.last_sync),
                    "battery_percent": d.battery_percent,
                    "revoked": d.revoked_at is not None,
                }
                for d in assigned
            ],
            "recorded_on": worn,
        },
        "settings": None
        if settings is None
        else {"values": settings.values, "limits": settings.limits, "updated_at": _iso(settings.updated_at)},
        "daily_exposure": [
            {"day": d.day.isoformat(), "computed_at": _iso(d.computed_at), "metrics": d.metrics}
            for d in session.scalars(
                select(DailyExposure).where(where["daily_exposure"]).order_by(DailyExposure.day)
            )
        ],
        "task_segments": [
            {
                "task_id": s.task_id,
                "task": tasks[s.task_id].name if s.task_id in tasks else None,
                "load_class": tasks[s.task_id].load_class if s.task_id in tasks else None,
                "start_s": s.start_s,
                "end_s": s.end_s,
                "source": s.source,
            }
            for s in session.scalars(
                select(TaskSegment).where(where["task_segments"]).order_by(TaskSegment.start_s)
            )
        ],
        "minute_summaries": [
            {
                "device_id": devices[m.device_pk],
                "seq": m.seq,
                "start_s": m.start_s,
                "worn_s": m.worn_s,
                "flexion_bins_s": list(m.flexion_bins),
                "inclination_bins_s": list(m.inclination_bins),
                "lateral_bins_s": list(m.lateral_bins),
                "activity_s": list(m.activity_s),
                "alert_count": m.alert_count,
                "longest_bout_s": m.longest_bout_s,
                "mean_velocity_ddps": m.mean_velocity_ddps,
                "curvature_mean_ddeg": m.curvature_mean_ddeg,
            }
            for m in session.execute(
                select(*_columns(MinuteSummary))
                .where(where["minute_summaries"])
                .order_by(MinuteSummary.start_s, MinuteSummary.seq)
            )
        ],
        "events": [
            {
                "device_id": devices[e.device_pk],
                "seq": e.seq,
                "type": e.rtype,
                "time_s": e.time_s,
                "fields": e.fields,
            }
            for e in session.execute(
                select(*_columns(Event)).where(where["events"]).order_by(Event.time_s, Event.seq)
            )
        ],
        "records": [
            {
                "device_id": devices[r.device_pk],
                "seq": r.seq,
                "rtype": r.rtype,
                "payload_hex": bytes(r.payload).hex(),
                "crc": r.crc,
                "received_at": _iso(r.received_at),
            }
            for r in session.execute(
                select(*_columns(Record)).where(where["records"]).order_by(Record.device_pk, Record.seq)
            )
        ],
    }


# The zip: profile.json (who, logins, sessions, devices, settings) and one CSV per kind of row.
PROFILE_KEYS = ("format", "exported_at", "worker", "logins", "sessions", "devices", "settings")
CSV_FILES = ("daily_exposure", "task_segments", "minute_summaries", "events", "records")


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(str(v) for v in value)  # a histogram: seconds per bin, in bin order
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return value


def _csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_cell(v) for k, v in row.items()})
    return buffer.getvalue()


def write_export_zip(session: Session, worker_id: int, fileobj: IO[bytes]) -> None:
    """The export as a zip: ``profile.json`` and ``<kind>.csv`` for each of CSV_FILES (daily
    metrics flattened to dotted columns, histograms as space-separated seconds per bin, event
    fields as JSON)."""
    from companion.api.routes.exposure import flatten

    document = export_worker(session, worker_id)
    days = [
        {"day": d["day"], "computed_at": d["computed_at"], **flatten(d["metrics"] or {})}
        for d in document["daily_exposure"]
    ]
    tables = {name: document[name] for name in CSV_FILES} | {"daily_exposure": days}
    with zipfile.ZipFile(fileobj, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("profile.json", json.dumps({k: document[k] for k in PROFILE_KEYS}, indent=2))
        for name in CSV_FILES:
            archive.writestr(f"{name}.csv", _csv(tables[name]))


# ---- erasure ---------------------------------------------------------------------------------------


@dataclass
class Erasure:
    worker_id: int
    deleted: dict[str, int] = field(default_factory=dict)  # table -> rows deleted
    devices_revoked: list[str] = field(default_factory=list)  # unassigned, key forgotten


def erase_worker(session: Session, worker_id: int) -> Erasure:
    """Delete every row that belongs to the worker and take their devices out of service
    (flushes; the caller commits).  KeyError when there is no such worker."""
    if session.get(Worker, worker_id) is None:
        raise KeyError(worker_id)
    where = worker_rows(session, worker_id)
    report = Erasure(worker_id)
    devices = list(
        session.scalars(select(Device).where(Device.worker_id == worker_id).order_by(Device.device_id))
    )
    report.devices_revoked = [d.device_id for d in devices]
    if devices:
        pks = [d.id for d in devices]
        report.deleted["device_settings"] = _delete(
            session, DeviceSettings, DeviceSettings.device_pk.in_(pks)
        )
        session.execute(
            update(Device)
            .where(Device.id.in_(pks))
            .values(worker_id=None, key=None, revoked_at=utc_now())
            .execution_options(synchronize_session=False)
        )
    # Children before parents: records before the summaries that say whose they are, tokens and
    # memberships before the logins, the logins before the worker.
    for name, condition in where.items():
        report.deleted[name] = _delete(session, _TABLES[name], condition)
    session.expire_all()
    log.info(
        "erased worker %s: %s; devices revoked: %s",
        worker_id,
        ", ".join(f"{n} {t}" for t, n in report.deleted.items() if n),
        ", ".join(report.devices_revoked) or "none",
    )
    return report


def _delete(session: Session, table: Any, condition: ColumnElement[bool]) -> int:
    result = session.execute(
        delete(table).where(and_(condition)).execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
