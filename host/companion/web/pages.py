"""Dashboard pages.  Each page asks the API's own functions for its data, so the dashboard and
the JSON API can never disagree on a number or on who may see it."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import select
from sqlalchemy.orm import Session

import protocol
from companion.api.deps import Principal, current_principal, get_session, visible_team
from companion.api.routes.devices import device_out
from companion.api.routes.exposure import get_timeline, team_summary, worker_days
from companion.store.models import Device, Task, Team, Worker

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
TEMPLATES.env.filters["timestamp"] = lambda s: dt.datetime.fromtimestamp(int(s), dt.UTC).strftime("%H:%M")
router = APIRouter(include_in_schema=False)


def _principal_or_none(request: Request, session: Session) -> Principal | None:
    try:
        return current_principal(request, session)
    except HTTPException as e:
        if e.status_code == status.HTTP_401_UNAUTHORIZED:
            return None
        raise


def _page(request: Request, name: str, principal: Principal | None, **context: Any) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(request, name, {"me": principal, **context})


def _signed_in(request: Request, session: Session) -> Principal:
    principal = _principal_or_none(request, session)
    if principal is None:
        raise HTTPException(status.HTTP_303_SEE_OTHER, headers={"Location": "/login"})
    return principal


def _denied(request: Request, principal: Principal, what: str) -> HTMLResponse:
    response = _page(request, "denied.html", principal, what=what)
    response.status_code = status.HTTP_403_FORBIDDEN
    return response


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, error: int = 0) -> HTMLResponse:
    return _page(request, "login.html", None, error=bool(error))


@router.get("/")
def home(request: Request, session: Session = Depends(get_session)) -> Response:
    principal = _principal_or_none(request, session)
    if principal is None:
        return RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)
    if principal.role == "worker":
        return RedirectResponse("/me", status_code=status.HTTP_303_SEE_OTHER)
    return RedirectResponse("/teams", status_code=status.HTTP_303_SEE_OTHER)


@router.get("/teams", response_class=HTMLResponse)
def teams(request: Request, session: Session = Depends(get_session)) -> HTMLResponse:
    principal = _signed_in(request, session)
    if principal.role == "worker":
        return _denied(request, principal, "team pages")
    query = select(Team).order_by(Team.name)
    if principal.role != "admin":
        query = query.where(Team.id.in_(principal.team_ids))
    return _page(request, "teams.html", principal, teams=list(session.scalars(query)))


@router.get("/teams/{team_id}", response_class=HTMLResponse)
def team_page(
    request: Request,
    team_id: int,
    date_from: dt.date | None = None,
    date_to: dt.date | None = None,
    session: Session = Depends(get_session),
) -> HTMLResponse:
    principal = _signed_in(request, session)
    try:
        team = visible_team(session, principal, team_id)
    except HTTPException as e:
        if e.status_code == status.HTTP_403_FORBIDDEN:
            return _denied(request, principal, f"team {team_id}")
        raise
    hi = date_to or dt.date.today()
    lo = date_from or hi - dt.timedelta(days=27)
    summary = team_summary(session, team_id, lo, hi)
    workers = list(session.scalars(select(Worker).where(Worker.team_id == team_id).order_by(Worker.name)))
    rows = worker_days(session, [w.id for w in workers], lo, hi)
    # Trend: per day, the team's share of worn time above 20° (all its worker-days together).
    per_day: dict[dt.date, list[float]] = {}
    latest: dict[int, dt.date] = {}
    for row in rows:
        m = row.metrics or {}
        worn = float(m.get("worn_s") or 0)
        above = float(((m.get("flexion") or {}).get("time_above_s") or {}).get("20") or 0)
        acc = per_day.setdefault(row.day, [0.0, 0.0])
        acc[0] += above
        acc[1] += worn
        latest[row.worker_id] = max(latest.get(row.worker_id, row.day), row.day)
    trend = [
        {"t": int(dt.datetime.combine(d, dt.time(12), dt.UTC).timestamp()), "pct": round(100 * a / w, 2) if w else None}
        for d, (a, w) in sorted(per_day.items())
    ]
    return _page(
        request,
        "team.html",
        principal,
        team=team,
        summary=summary,
        latest=latest,
        lo=lo,
        hi=hi,
        trend_json=json.dumps(trend),
    )


@router.get("/workers/{worker_id}/days/{day}", response_class=HTMLResponse)
def worker_day(request: Request, worker_id: int, day: dt.date, session: Session = Depends(get_session)) -> HTMLResponse:
    principal = _signed_in(request, session)
    try:
        timeline = get_timeline(worker_id, day, False, principal, session)
    except HTTPException as e:
        if e.status_code in (status.HTTP_403_FORBIDDEN, status.HTTP_404_NOT_FOUND):
            return _denied(request, principal, f"worker {worker_id}'s days")
        raise
    worker = session.get(Worker, worker_id)
    rows = worker_days(session, [worker_id], day, day)
    metrics = rows[0].metrics if rows and rows[0].metrics else None
    series = {
        "t": [m.start_s for m in timeline.minutes],
        "p50": [m.flexion_p50_deg for m in timeline.minutes],
        "p90": [m.flexion_p90_deg for m in timeline.minutes],
        "alerts": [a["time_s"] for a in timeline.alerts],
    }
    return _page(
        request,
        "worker_day.html",
        principal,
        worker=worker,
        day=day,
        prev_day=day - dt.timedelta(days=1),
        next_day=day + dt.timedelta(days=1),
        timeline=timeline,
        metrics=metrics,
        summary=plain_summary(metrics),
        series_json=json.dumps(series),
        outcomes=protocol.OUTCOMES,
        task_names={t.id: t.name for t in session.scalars(select(Task))},
    )


@router.get("/devices", response_class=HTMLResponse)
def devices(request: Request, session: Session = Depends(get_session)) -> HTMLResponse:
    principal = _signed_in(request, session)
    if principal.role == "worker":
        return _denied(request, principal, "the device list")
    query = select(Device).order_by(Device.device_id)
    if principal.role != "admin":
        query = query.join(Worker, Device.worker_id == Worker.id).where(Worker.team_id.in_(principal.team_ids))
    names = {w.id: w.name for w in session.scalars(select(Worker))}
    listed = [(device_out(session, d), names.get(d.worker_id or -1, "—")) for d in session.scalars(query)]
    return _page(request, "devices.html", principal, devices=listed)


def plain_summary(metrics: dict[str, Any] | None) -> str:
    """One sentence a wearer can read."""
    if not metrics or not metrics.get("worn_s"):
        return "No data for this day yet: the device sends it when it is on its charger."
    worn_h = metrics["worn_s"] / 3600
    above = (metrics.get("flexion") or {}).get("time_above_s", {}).get("20", 0)
    pct = 100 * above / metrics["worn_s"]
    alerts = (metrics.get("alerts") or {}).get("count", 0)
    corrected = (metrics.get("alerts") or {}).get("median_time_to_correct_s")
    text = f"You wore the sensor {worn_h:.1f} h and spent {pct:.0f} % of that time bent forward more than 20°."
    if alerts:
        text += f" It buzzed {alerts} time{'s' if alerts != 1 else ''}"
        text += f"; you straightened up after {corrected:.0f} s (median)." if corrected is not None else "."
    return text
