"""Dashboard pages.  Each page asks the API's own functions for its data, so the dashboard and
the JSON API can never disagree on a number or on who may see it."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import select
from sqlalchemy.orm import Session

import protocol
from companion.api.deps import Principal, current_principal, get_session, visible_team
from companion.api.routes.devices import device_out
from companion.api.routes.exposure import get_timeline, summary_of_rows, team_days, team_workers, worker_days
from companion.api.routes.rotation import parse_week, rotation_module, team_rotation_weeks, worker_rotation
from companion.store.models import Device, Task, Team, Worker

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
router = APIRouter(include_in_schema=False)

TREND_WEEKS = 8  # the team page's week-by-week trend: the selected ISO week and the 7 before it
WEEK = dt.timedelta(days=6)  # Monday to Sunday, both included
LOAD_CLASSES = ("low", "medium", "high")


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


def iso_week(day: dt.date) -> str:
    """The ISO week of a day, as the API spells it: "2026-W48"."""
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def _rotation_or_none(answer: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    """The rotation API's answer, or None while companion.rotation is not installed (503)."""
    try:
        return answer()
    except HTTPException as e:
        if e.status_code == status.HTTP_503_SERVICE_UNAVAILABLE:
            return None
        raise


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
    week: str | None = None,
    session: Session = Depends(get_session),
) -> HTMLResponse:
    """Exposure by worker over a date range (default: the 28 days to today), with its daily
    trend; rotation compliance of one ISO week (default: the week of the range's last day); and
    the team week by week over the TREND_WEEKS weeks to that one."""
    principal = _signed_in(request, session)
    try:
        team = visible_team(session, principal, team_id)
    except HTTPException as e:
        if e.status_code == status.HTTP_403_FORBIDDEN:
            return _denied(request, principal, f"team {team_id}")
        raise
    hi = date_to or dt.date.today()
    lo = date_from or hi - dt.timedelta(days=27)
    monday = parse_week(week) if week else hi - dt.timedelta(days=hi.weekday())
    weeks = [monday - dt.timedelta(weeks=k) for k in range(TREND_WEEKS - 1, -1, -1)]
    workers = team_workers(session, team_id)
    # The range's and the eight weeks' days from one load (worker_days recomputes the stale ones
    # first), each summary cut from it: nine team_summary calls made this the slowest page.
    all_rows = team_days(session, [w.id for w in workers], [(lo, hi), (weeks[0], weeks[-1] + WEEK)])
    summary = summary_of_rows(team_id, workers, all_rows, lo, hi)
    rows = [r for r in all_rows if lo <= r.day <= hi]
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
        {
            "t": int(dt.datetime.combine(d, dt.time(12), dt.UTC).timestamp()),
            "pct": round(100 * a / w, 2) if w else None,
        }
        for d, (a, w) in sorted(per_day.items())
    ]
    rotation_weeks = _rotation_or_none(
        lambda: {"weeks": team_rotation_weeks(rotation_module(), session, team_id, weeks, False)}
    )
    week_trend = []
    compliance = None
    for k, week_monday in enumerate(weeks):
        team_week = rotation_weeks["weeks"][k] if rotation_weeks else None
        exposure = summary_of_rows(team_id, workers, all_rows, week_monday, week_monday + WEEK)
        week_trend.append(week_row(week_monday, exposure, team_week))
        compliance = team_week  # the last: the selected week
    range_query = f"date_from={lo}&date_to={hi}"
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
        week=iso_week(monday),
        prev_week=f"?{range_query}&week={iso_week(monday - dt.timedelta(weeks=1))}",
        next_week=f"?{range_query}&week={iso_week(monday + dt.timedelta(weeks=1))}",
        compliance=compliance,
        compliance_rows=compliance_rows(compliance) if compliance else [],
        compliance_total=compliance_total(compliance) if compliance else None,
        week_trend=week_trend,
        week_trend_json=json.dumps(
            {
                "labels": [w["week"] for w in week_trend],
                "p50": [w["p50"] for w in week_trend],
                "p90": [w["p90"] for w in week_trend],
                "compliant_pct": [w["compliant_pct"] for w in week_trend],
            }
        ),
    )


def _week_verdict(week: dict[str, Any], switches: int) -> dict[str, Any]:
    """A week's totals (rotation.week_compliance) with what the table says of them: the posture
    profile changed at every rotation (None: no rotation), every assessed day compliant (None:
    no day with tracked task minutes)."""
    return {
        **week,
        "switches": switches,
        "profile_changed": week["rotated_but_same_posture"] == 0 if switches else None,
        "compliant": week["compliant_days"] == week["days"] if week["days"] else None,
    }


def compliance_rows(team_week: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per worker of GET /api/teams/{id}/rotation's answer (the week's totals and a
    verdict), with each day that has data as a link to the worker-day page."""
    out = []
    for w in team_week["workers"]:
        switches = sum(len(d["switches"]) for d in w["days"])
        day_links = [
            {
                "date": d["date"],
                "weekday": dt.date.fromisoformat(d["date"]).strftime("%a"),
                "verdict": rotation_verdict(d),
            }
            for d in w["days"]
        ]
        out.append(
            {
                "worker_id": w["worker_id"],
                "name": w["name"],
                "day_links": day_links,
                **_week_verdict(w["week"], switches),
            }
        )
    return sorted(out, key=lambda r: r["name"])


def compliance_total(team_week: dict[str, Any]) -> dict[str, Any]:
    switches = sum(len(d["switches"]) for w in team_week["workers"] for d in w["days"])
    return _week_verdict(team_week["team"], switches)


def week_row(monday: dt.date, summary: Any, team_week: dict[str, Any] | None) -> dict[str, Any]:
    """One ISO week of the team: its exposure (team_summary's team row over Monday-Sunday) and
    its share of compliant worker-days (rotation.week_compliance over the team's days)."""
    team = summary.team
    rotation = team_week["team"] if team_week else None
    share = rotation["compliant_share"] if rotation else None
    return {
        "week": iso_week(monday),
        "monday": monday,
        "worker_days": team.days,
        "worn_h": team.worn_h,
        "p50": team.flexion_p50_deg,
        "p90": team.flexion_p90_deg,
        "above_20_pct": team.flexion_above_20_pct,
        "assessed_days": rotation["days"] if rotation else None,
        "compliant_days": rotation["compliant_days"] if rotation else None,
        "compliant_pct": round(100 * share, 1) if share is not None else None,
    }


@router.get("/workers/{worker_id}/days/{day}", response_class=HTMLResponse)
def worker_day(
    request: Request,
    worker_id: int,
    day: dt.date,
    infer: bool = False,
    session: Session = Depends(get_session),
) -> HTMLResponse:
    """A worker-day in the worker's time zone: the flexion timeline with alerts and the task
    segments behind it, zones, activity, alerts, and the day's rotation compliance (GET
    /api/workers/{id}/rotation/{day}, with ?infer=true when asked)."""
    principal = _signed_in(request, session)
    try:
        timeline = get_timeline(worker_id, day, False, principal, session)
    except HTTPException as e:
        if e.status_code in (status.HTTP_403_FORBIDDEN, status.HTTP_404_NOT_FOUND):
            return _denied(request, principal, f"worker {worker_id}'s days")
        raise
    worker = session.get(Worker, worker_id)
    tz = ZoneInfo(timeline.timezone or "UTC")

    def clock(time_s: int) -> str:
        return dt.datetime.fromtimestamp(time_s, tz).strftime("%H:%M")

    rows = worker_days(session, [worker_id], day, day)
    metrics = rows[0].metrics if rows and rows[0].metrics else None
    compliance = _rotation_or_none(partial(worker_rotation, worker_id, day, infer, principal, session))
    tasks = {t.id: t for t in session.scalars(select(Task))}
    segments = [segment_row(s, tasks, clock) for s in (compliance or {}).get("segments", [])]
    series = {
        "t": [m.start_s for m in timeline.minutes],
        "p50": [m.flexion_p50_deg for m in timeline.minutes],
        "p90": [m.flexion_p90_deg for m in timeline.minutes],
        "alerts": [a["time_s"] for a in timeline.alerts],
        "tz": timeline.timezone or "UTC",
        "segments": [
            {"start_s": g["start_s"], "end_s": g["end_s"], "label": g["task"], "load": g["load_class"]}
            for g in segments
        ],
    }
    switches = [
        {
            **sw,
            "clock": clock(sw["time_s"]),
            "from": tasks[sw["from_task"]].name if sw["from_task"] in tasks else f"task {sw['from_task']}",
            "to": tasks[sw["to_task"]].name if sw["to_task"] in tasks else f"task {sw['to_task']}",
        }
        for sw in (compliance or {}).get("switches", [])
    ]
    return _page(
        request,
        "worker_day.html",
        principal,
        worker=worker,
        day=day,
        prev_day=day - dt.timedelta(days=1),
        next_day=day + dt.timedelta(days=1),
        timezone=timeline.timezone or "UTC",
        clock=clock,
        timeline=timeline,
        metrics=metrics,
        summary=plain_summary(metrics),
        series_json=json.dumps(series),
        outcomes=protocol.OUTCOMES,
        compliance=compliance,
        verdict=rotation_verdict(compliance) if compliance else None,
        reasons=rotation_reasons(compliance) if compliance else [],
        segments=segments,
        switches=switches,
        infer=infer,
        load_classes=LOAD_CLASSES,
    )


def segment_row(
    segment: dict[str, Any], tasks: dict[int, Task], clock: Callable[[int], str]
) -> dict[str, Any]:
    """A task segment of the rotation API's answer as the page shows it.  An inferred segment's
    task_id is the index of its activity class (rotation.infer_segments), not a task."""
    task = tasks.get(segment["task_id"]) if segment["source"] != "inferred" else None
    if task is not None:
        name, load = task.name, task.load_class
    elif segment["source"] == "inferred" and 0 <= segment["task_id"] < len(protocol.ACTIVITIES):
        name, load = protocol.ACTIVITIES[segment["task_id"]].replace("_", " ") + " (activity)", None
    else:
        name, load = f"task {segment['task_id']}", None
    return {
        **segment,
        "task": name,
        "load_class": load,
        "from": clock(segment["start_s"]),
        "to": clock(segment["end_s"]),
        "minutes": round((segment["end_s"] - segment["start_s"]) / 60),
    }


def rotation_verdict(day: dict[str, Any]) -> str:
    """ "compliant", "not compliant", or "not assessed" when no task segment covers a worn minute
    (such a day counts in no week's total: rotation.week_compliance)."""
    if day["tracked_min"] == 0:
        return "not assessed"
    return "compliant" if day["compliant"] else "not compliant"


def _times(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def rotation_reasons(day: dict[str, Any]) -> list[str]:
    """Why the day got its verdict, in sentences, from GET /api/workers/{id}/rotation/{day}'s
    numbers and the policy it was judged by (the definitions: docs/metrics.md, "Task rotation")."""
    policy = day["policy"]
    task_max, high_max = policy["max_task_min"], policy["max_high_load_min"]
    change_min = policy["min_profile_change_deg"]
    if day["tracked_min"] == 0:
        return ["No task segment covers a worn minute of this day, so there is nothing to judge."]
    reasons = [f"{day['tracked_min']} worn minutes were in a known task."]
    if task_max is None and high_max is None:
        reasons.append("The team's policy sets no time limits.")
    if task_max is not None:
        longest = day["longest_task_min"]
        if longest > task_max:
            reasons.append(
                f"The longest run in one task was {longest} min; the policy allows {task_max} min."
            )
        else:
            reasons.append(
                f"No run in one task was longer than the {task_max} min allowed (longest {longest} min)."
            )
    if high_max is not None:
        longest = day["longest_high_load_min"]
        if longest > high_max:
            reasons.append(
                f"The longest spell in high-load tasks was {longest} min; the policy allows {high_max} min."
            )
        elif longest:
            reasons.append(
                f"No spell in high-load tasks was longer than the {high_max} min allowed (longest {longest} min)."
            )
        else:
            reasons.append("No high-load task this day.")
    if day["overdue_min"]:
        missed = day["rotations_required"] - day["rotations_met"]
        reasons.append(
            f"{day['overdue_min']} min overdue in all; {_times(missed, 'rotation was', 'rotations were')} due and not made."
        )
    switches = len(day["switches"])
    same = day["rotated_but_same_posture"]
    if not switches and len({s["task_id"] for s in day.get("segments", [])}) > 1:
        reasons.append(
            "No rotation between tasks this day: a change of task after a break of more than "
            "15 minutes does not count as one."
        )
    elif not switches:
        reasons.append("No rotation between tasks this day.")
    elif change_min <= 0:
        reasons.append(
            f"{_times(switches, 'rotation', 'rotations')}; the policy asks for no change of posture."
        )
    elif same:
        reasons.append(
            f"{same} of {_times(switches, 'rotation', 'rotations')} kept the same posture (median and 90th "
            f"percentile flexion changed by less than {change_min:g}°)."
        )
    else:
        which = "The rotation" if switches == 1 else f"All {switches} rotations"
        reasons.append(f"{which} changed the posture profile by at least {change_min:g}°.")
    return reasons


@router.get("/devices", response_class=HTMLResponse)
def devices(request: Request, session: Session = Depends(get_session)) -> HTMLResponse:
    principal = _signed_in(request, session)
    if principal.role == "worker":
        return _denied(request, principal, "the device list")
    query = select(Device).order_by(Device.device_id)
    if principal.role != "admin":
        query = query.join(Worker, Device.worker_id == Worker.id).where(
            Worker.team_id.in_(principal.team_ids)
        )
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
    text = (
        f"You wore the sensor {worn_h:.1f} h and spent {pct:.0f} % of that time bent forward more than 20°."
    )
    if alerts:
        text += f" It buzzed {alerts} time{'s' if alerts != 1 else ''}"
        text += f"; you straightened up after {corrected:.0f} s (median)." if corrected is not None else "."
    return text
