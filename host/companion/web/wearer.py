"""The wearer's own pages: today (/me), this week (/me/week), their alert settings (/me/settings).

A worker is a user too: these pages show only the signed-in worker's own data (the principal's
worker_id, never one from the URL), in their time zone, in plain words.  Numbers come from the
same functions as the JSON API (daily exposure, timelines), and a settings change goes through
companion.api.devicesettings.change_worker_settings like PUT /api/workers/{id}/settings, within
the limits the worker's ergonomist set, to reach the sensor at its next sync.  Only a worker may
change settings here: an ergonomist or admin changing a wearer's settings uses the API.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from dataclasses import dataclass
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import protocol
from companion.api import devicesettings as ds
from companion.api.deps import Principal, get_session
from companion.api.routes.exposure import get_timeline, worker_days
from companion.api.routes.rotation import parse_week
from companion.exposure import ISO_ZONES
from companion.store.models import DailyExposure, Device, DeviceSettings, Worker
from companion.web import csrf
from companion.web.pages import _denied, _page, _signed_in, iso_week
from companion.web.plain_language import (
    alert_tally,
    busiest_hour,
    day_summary,
    duration_text,
    week_summary,
    week_totals,
)

router = APIRouter(include_in_schema=False)

ZONE_LABELS = {
    "extension": "bent backwards",
    "acceptable": "0–20°: acceptable",
    "conditional": "20–60°: acceptable only for short spells",
    "not_acceptable": "over 60°: not acceptable",
}
OUTCOME_WORDS = {
    "corrected": "you straightened up",
    "snoozed": "snoozed with the button",
    "suppressed": "silent (quiet hours, snooze or daily limit)",
    "timed_out": "not corrected",
}
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _wearer(request: Request, session: Session) -> tuple[Principal, Worker] | Response:
    """The signed-in user and the worker they are; users who wear no sensor go to /teams."""
    principal = _signed_in(request, session)
    worker = session.get(Worker, principal.worker_id) if principal.worker_id is not None else None
    if worker is None:
        return RedirectResponse("/teams", status_code=status.HTTP_303_SEE_OTHER)
    return principal, worker


def _tz(worker: Worker) -> ZoneInfo:
    return ZoneInfo(worker.timezone or "UTC")


def local_today(worker: Worker) -> dt.date:
    return dt.datetime.now(_tz(worker)).date()


# ---- today ------------------------------------------------------------------------------------


@router.get("/me", response_class=HTMLResponse)
def my_day(request: Request, day: dt.date | None = None, session: Session = Depends(get_session)) -> Response:
    """The wearer's day (default: today in their time zone)."""
    found = _wearer(request, session)
    if isinstance(found, Response):
        return found
    principal, worker = found
    tz = _tz(worker)
    today = local_today(worker)
    day = day or today
    timeline = get_timeline(worker.id, day, False, principal, session)
    rows = worker_days(session, [worker.id], day, day)
    metrics = rows[0].metrics if rows and rows[0].metrics else None

    def clock(time_s: int) -> str:
        return dt.datetime.fromtimestamp(time_s, tz).strftime("%H:%M")

    busiest = busiest_hour(
        [m.start_s for m in timeline.minutes],
        [m.flexion_above_20_s for m in timeline.minutes],
        timeline.day_start_s,
    )
    tally = alert_tally(timeline.alerts)
    latest = None
    if metrics is None:
        latest = session.scalar(
            select(func.max(DailyExposure.day)).where(
                DailyExposure.worker_id == worker.id, DailyExposure.day <= today, DailyExposure.day != day
            )
        )
    zones = []
    if metrics:
        zones = [
            {"label": ZONE_LABELS[z], "s": metrics["iso11226_s"][z], "pct": metrics["iso11226_pct"][z]}
            for z in ISO_ZONES
        ]
    alerts = []
    for a in timeline.alerts:
        outcome = a.get("outcome")
        name = (
            protocol.OUTCOMES[outcome]
            if isinstance(outcome, int) and outcome < len(protocol.OUTCOMES)
            else "?"
        )
        ttc = a.get("time_to_correct_s")
        alerts.append(
            {
                "clock": clock(int(a.get("start_s", a["time_s"]))),
                "peak_deg": round((a.get("peak_flexion_ddeg") or 0) / 10),
                "held_s": a.get("duration_s"),
                "time_to_correct": f"{ttc} s" if ttc is not None and name == "corrected" else "—",
                "outcome": OUTCOME_WORDS.get(name, name),
            }
        )
    series: dict[str, Any] = {"t": [], "p50": [], "p90": [], "tz": worker.timezone or "UTC"}
    for m in timeline.minutes:
        if series["t"] and m.start_s > series["t"][-1] + 60:  # not worn: a gap, not a line across
            series["t"].append(series["t"][-1] + 60)
            series["p50"].append(None)
            series["p90"].append(None)
        series["t"].append(m.start_s)
        series["p50"].append(m.flexion_p50_deg)
        series["p90"].append(m.flexion_p90_deg)
    series["alerts"] = [a["time_s"] for a in timeline.alerts]
    return _page(
        request,
        "me_day.html",
        principal,
        worker=worker,
        day=day,
        is_today=day == today,
        prev_day=day - dt.timedelta(days=1),
        next_day=day + dt.timedelta(days=1) if day < today else None,
        week=iso_week(day),
        latest=latest,
        summary=day_summary(metrics, busiest, tally, clock),
        metrics=metrics,
        zones=zones,
        alerts=alerts,
        series_json=json.dumps(series),
        duration=duration_text,
    )


# ---- this week --------------------------------------------------------------------------------


def _above(metrics: dict[str, Any] | None, deg: int) -> int | None:
    return int(metrics["flexion"]["time_above_s"][str(deg)]) if metrics else None


@router.get("/me/week", response_class=HTMLResponse)
def my_week(request: Request, week: str | None = None, session: Session = Depends(get_session)) -> Response:
    """The wearer's ISO week (default: this week in their time zone), day by day, compared
    with the week before."""
    found = _wearer(request, session)
    if isinstance(found, Response):
        return found
    principal, worker = found
    today = local_today(worker)
    if week is None:
        monday = today - dt.timedelta(days=today.weekday())
    else:
        try:
            monday = parse_week(week)
        except HTTPException as e:
            response = _page(request, "me_week.html", principal, error=e.detail, worker=worker)
            response.status_code = 422
            return response
    days = [monday + dt.timedelta(days=i) for i in range(7)]
    stored = {
        r.day: r.metrics if r.metrics and r.metrics.get("worn_s") else None
        for r in worker_days(session, [worker.id], monday - dt.timedelta(days=7), days[-1])
    }
    this = [stored.get(d) for d in days]
    before = [stored.get(d - dt.timedelta(days=7)) for d in days]
    rows = [
        {
            "day": d,
            "weekday": WEEKDAYS[d.weekday()],
            "future": d > today,
            "worn_s": m["worn_s"] if m else None,
            "above": {deg: _above(m, deg) for deg in (20, 45, 60)},
            "alerts": m["alerts"]["count"] if m else None,
            "corrected_pct": m["alerts"]["corrected_pct"] if m else None,
        }
        for d, m in zip(days, this, strict=True)
    ]
    totals, previous = week_totals(this), week_totals(before)

    def minutes(m: dict[str, Any] | None, deg: int) -> float | None:
        above = _above(m, deg)
        return None if above is None else round(above / 60, 1)

    chart = {
        "labels": [f"{WEEKDAYS[d.weekday()]} {d.day}" for d in days],
        "above20": [minutes(m, 20) for m in this],
        "above45": [minutes(m, 45) for m in this],
        "above60": [minutes(m, 60) for m in this],
        "prev_above20": [minutes(m, 20) for m in before],
    }
    next_monday = monday + dt.timedelta(days=7)
    return _page(
        request,
        "me_week.html",
        principal,
        worker=worker,
        week=iso_week(monday),
        monday=monday,
        sunday=days[-1],
        prev_week=iso_week(monday - dt.timedelta(days=7)),
        next_week=iso_week(next_monday) if next_monday <= today else None,
        rows=rows,
        totals=totals,
        summary=week_summary(totals, previous),
        chart_json=json.dumps(chart),
        duration=duration_text,
    )


# ---- settings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SettingField:
    """One alert setting on the form: its device key (devicesettings.WORKER_SETTINGS), words,
    and how the form shows it: `scale` device units per form unit (snooze: 60 s a minute),
    `clock` for a minute of the day shown as HH:MM (the device keeps whole minutes of the day)."""

    key: str
    label: str
    help: str
    unit: str = ""
    device_unit: str = ""  # the unit the device keeps it in, in words
    scale: int = 1
    clock: bool = False

    def shown(self, value: int) -> str:
        """A device value as the form shows it."""
        if self.clock:
            return f"{value // 60:02d}:{value % 60:02d}"
        return str(value // self.scale) if value % self.scale == 0 else f"{value / self.scale:g}"

    def words(self, value: int) -> str:
        return self.shown(value) + (f" {self.unit}" if self.unit and self.unit != "°" else self.unit)

    def bounds(self, lo: int, hi: int) -> tuple[str, str]:
        """The input's min and max in form units (rounded inwards)."""
        if self.clock:
            return self.shown(lo), self.shown(hi)
        return str(math.ceil(lo / self.scale)), str(hi // self.scale)

    def parse(self, raw: str) -> int:
        """The device value of what the wearer typed; ValueError with a sentence if unreadable."""
        text = raw.strip()
        if self.clock:
            match = _CLOCK.match(text)
            if match is None or int(match[1]) > 23 or int(match[2]) > 59:
                raise ValueError(f"{self.label}: “{raw}” is not a time of day like 07:30")
            return int(match[1]) * 60 + int(match[2])
        try:
            number = float(text.replace(",", "."))
        except ValueError:
            raise ValueError(f"{self.label}: “{raw}” is not a number") from None
        if not math.isfinite(number):
            raise ValueError(f"{self.label}: “{raw}” is not a number")
        value = number * self.scale
        if value != round(value):
            raise ValueError(f"{self.label}: {raw} {self.unit} is not a whole number of {self.device_unit}")
        return round(value)


_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::\d{2})?$")

FIELDS = (
    SettingField(
        "alert_threshold_deg",
        "Alert threshold",
        "How far you may bend forward (beyond your calibrated upright posture) before it counts.",
        unit="°",
        device_unit="degrees",
    ),
    SettingField(
        "alert_hold_s",
        "Hold time",
        "How long you may stay bent that far before it buzzes.",
        unit="s",
        device_unit="seconds",
    ),
    SettingField(
        "alert_snooze_s",
        "Snooze length",
        "How long a press of the button silences it.",
        unit="min",
        device_unit="seconds",
        scale=60,
    ),
    SettingField(
        "quiet_start_min",
        "Quiet hours from",
        "No buzzing from this time… (the same time twice: no quiet hours)",
        clock=True,
    ),
    SettingField(
        "quiet_end_min", "Quiet hours until", "…until this time (may be after midnight).", clock=True
    ),
)


def _changes(
    submitted: dict[str, str | None], current: dict[str, int], limits: dict[str, tuple[int, int]]
) -> tuple[dict[str, int], list[str]]:
    """What the wearer changed (device values) and, if anything is wrong, one sentence each."""
    changes: dict[str, int] = {}
    errors: list[str] = []
    for field in FIELDS:
        raw = submitted.get(field.key)
        if raw is None or not raw.strip():
            continue  # left out (or a fixed, disabled field): unchanged
        try:
            value = field.parse(raw)
        except ValueError as e:
            errors.append(str(e))
            continue
        if value == current[field.key]:
            continue
        lo, hi = limits[field.key]
        if not lo <= value <= hi:
            errors.append(
                f"{field.label} must be between {field.words(lo)} and {field.words(hi)} "
                f"(the range your ergonomist set); you asked for {field.words(value)}."
            )
            continue
        changes[field.key] = value
    return changes, errors


@dataclass(frozen=True)
class Delivery:
    """Where a device stands with the wearer's settings."""

    device_id: str
    waiting: bool  # settings wait for its next sync
    applied_at: str | None  # local time the device last confirmed applying settings
    last_sync: str | None


def _deliveries(session: Session, worker: Worker) -> list[Delivery]:
    tz = _tz(worker)

    def local(moment: dt.datetime | None) -> str | None:
        if moment is None:
            return None
        aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
        return aware.astimezone(tz).strftime("%Y-%m-%d %H:%M")

    out = []
    for device in session.scalars(
        select(Device).where(Device.worker_id == worker.id).order_by(Device.device_id)
    ):
        row = session.get(DeviceSettings, device.id)
        out.append(
            Delivery(
                device_id=device.device_id,
                waiting=bool(row is not None and row.pending_config),
                applied_at=local(row.applied_at) if row is not None else None,
                last_sync=local(device.last_sync),
            )
        )
    return out


def _settings_page(
    request: Request,
    session: Session,
    principal: Principal,
    worker: Worker,
    *,
    shown: dict[str, str] | None = None,
    errors: list[str] | None = None,
    saved: bool = False,
    unchanged: bool = False,
) -> HTMLResponse:
    row = ds.worker_settings(session, worker.id)
    values, limits = ds.effective_values(row), ds.effective_limits(row)
    fields = []
    for field in FIELDS:
        lo, hi = limits[field.key]
        low, high = field.bounds(lo, hi)
        fields.append(
            {
                "spec": field,
                "value": (shown or {}).get(field.key) or field.shown(values[field.key]),
                "current": field.words(values[field.key]),
                "min": low,
                "max": high,
                # The browser checks the range too, unless the current value is outside it (an
                # untouched field must not block saving the others).
                "bounded": lo <= values[field.key] <= hi,
                "single": lo == hi,
                "fixed": lo == hi == values[field.key],  # nothing else to choose: not editable
                "range": f"{field.words(lo)}" if lo == hi else f"{field.words(lo)} to {field.words(hi)}",
            }
        )
    response = _page(
        request,
        "me_settings.html",
        principal,
        worker=worker,
        fields=fields,
        errors=errors or [],
        saved=saved,
        unchanged=unchanged,
        deliveries=_deliveries(session, worker),
        csrf_field=csrf.FIELD,
        csrf_token=csrf.form_token(request),
    )
    session.commit()  # worker_settings() may have created the worker's (empty) row
    return response


def _own_settings(request: Request, session: Session) -> tuple[Principal, Worker] | Response:
    """The wearer themself, or the page that refuses anyone else."""
    principal = _signed_in(request, session)
    if principal.role != "worker":
        return _denied(
            request, principal, "a wearer's own settings page (it belongs to the person wearing the sensor)"
        )
    return _wearer(request, session)


@router.get("/me/settings", response_class=HTMLResponse)
def my_settings(
    request: Request, saved: int = 0, unchanged: int = 0, session: Session = Depends(get_session)
) -> Response:
    found = _own_settings(request, session)
    if isinstance(found, Response):
        return found
    principal, worker = found
    return _settings_page(request, session, principal, worker, saved=bool(saved), unchanged=bool(unchanged))


_FORM_TEXT = Form(max_length=32)


@router.post("/me/settings", response_class=HTMLResponse)
def change_my_settings(
    request: Request,
    csrf_token: Annotated[str | None, Form(max_length=128)] = None,
    alert_threshold_deg: Annotated[str | None, _FORM_TEXT] = None,
    alert_hold_s: Annotated[str | None, _FORM_TEXT] = None,
    alert_snooze_s: Annotated[str | None, _FORM_TEXT] = None,
    quiet_start_min: Annotated[str | None, _FORM_TEXT] = None,
    quiet_end_min: Annotated[str | None, _FORM_TEXT] = None,
    session: Session = Depends(get_session),
) -> Response:
    """Change the wearer's settings within their limits; they wait for the sensor's next sync."""
    found = _own_settings(request, session)
    if isinstance(found, Response):
        return found
    principal, worker = found
    try:
        csrf.check_form_token(request, csrf_token)
    except csrf.ForgedForm as e:
        response = _settings_page(request, session, principal, worker, errors=[str(e.detail)])
        response.status_code = e.status_code
        return response
    submitted = {
        "alert_threshold_deg": alert_threshold_deg,
        "alert_hold_s": alert_hold_s,
        "alert_snooze_s": alert_snooze_s,
        "quiet_start_min": quiet_start_min,
        "quiet_end_min": quiet_end_min,
    }
    row = ds.worker_settings(session, worker.id)
    limits = ds.effective_limits(row)
    changes, errors = _changes(submitted, ds.effective_values(row), limits)
    if not errors and changes:
        try:
            # The API's own path: validated again against the same limits, stored, queued.
            ds.change_worker_settings(session, worker.id, changes, limits)
        except ds.SettingsError as e:
            errors.append(str(e))
    if errors:
        session.rollback()
        shown = {k: v.strip() for k, v in submitted.items() if v is not None and v.strip()}
        response = _settings_page(request, session, principal, worker, shown=shown, errors=errors)
        response.status_code = 422
        return response
    session.commit()
    after = "saved=1" if changes else "unchanged=1"
    return RedirectResponse(f"/me/settings?{after}", status_code=status.HTTP_303_SEE_OTHER)
