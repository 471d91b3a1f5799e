"""Task rotation: tasks, team policies, task segments, compliance (computed by companion.rotation)."""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import importlib
import re
from functools import lru_cache
from types import ModuleType
from typing import Annotated, Any, cast
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Query, status
from sqlalchemy import Executable, bindparam, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from companion.api.deps import (
    Principal,
    can_see_team,
    current_principal,
    get_session,
    require_role,
    visible_team,
    visible_worker,
)
from companion.api.routes.exposure import day_bounds
from companion.api.schemas import Day, Id, PolicyIn, PolicyOut, SegmentIn, SegmentOut, TaskIn, TaskOut
from companion.exposure import day_bounds_s
from companion.store.models import Event, MinuteSummary, RotationPolicy, Task, TaskSegment, Team, Worker

router = APIRouter(tags=["rotation"])
managers = require_role("ergonomist", "admin")


def rotation_module() -> ModuleType:
    """companion.rotation, or 503 while it is not installed (it is developed separately)."""
    try:
        rotation = importlib.import_module("companion.rotation")
    except ImportError:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "rotation compliance is not available"
        ) from None
    return rotation


# ---- tasks ---------------------------------------------------------------------------------------


def _may_edit_task_of(principal: Principal, team_id: int | None) -> bool:
    if principal.role == "admin":
        return True
    return team_id is not None and can_see_team(principal, team_id)


def _task(session: Session, task_id: int) -> Task:
    task = session.get(Task, task_id)
    if task is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no task {task_id}")
    return task


@router.get("/tasks", response_model=list[TaskOut])
def list_tasks(
    principal: Principal = Depends(current_principal), session: Session = Depends(get_session)
) -> list[Task]:
    """Shared tasks and those of the teams the user sees (a worker: their own team's)."""
    query = select(Task).order_by(Task.id)
    if principal.role == "ergonomist":
        query = query.where(Task.team_id.is_(None) | Task.team_id.in_(principal.team_ids))
    elif principal.role == "worker":
        worker = session.get(Worker, principal.worker_id) if principal.worker_id is not None else None
        team_id = worker.team_id if worker is not None else None
        query = query.where(Task.team_id.is_(None) | (Task.team_id == team_id))
    return list(session.scalars(query))


@router.post("/tasks", response_model=TaskOut, status_code=status.HTTP_201_CREATED)
def create_task(
    body: TaskIn, principal: Principal = Depends(managers), session: Session = Depends(get_session)
) -> Task:
    """Ergonomist: tasks of their teams; admin: also shared tasks (team_id null)."""
    if body.team_id is not None and session.get(Team, body.team_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no team {body.team_id}")
    if not _may_edit_task_of(principal, body.team_id):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "you may add tasks only to your own teams")
    task = Task(name=body.name, load_class=body.load_class, team_id=body.team_id)
    session.add(task)
    try:
        session.commit()
    except IntegrityError:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"a task named {body.name!r} exists there already"
        ) from None
    return task


@router.put("/tasks/{task_id}", response_model=TaskOut)
def update_task(
    task_id: Id,
    body: TaskIn,
    principal: Principal = Depends(managers),
    session: Session = Depends(get_session),
) -> Task:
    task = _task(session, task_id)
    if not _may_edit_task_of(principal, task.team_id) or not _may_edit_task_of(principal, body.team_id):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "you may change tasks only of your own teams")
    task.name, task.load_class, task.team_id = body.name, body.load_class, body.team_id
    try:
        session.commit()
    except IntegrityError:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"a task named {body.name!r} exists there already"
        ) from None
    return task


@router.delete("/tasks/{task_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_task(
    task_id: Id, principal: Principal = Depends(managers), session: Session = Depends(get_session)
) -> None:
    task = _task(session, task_id)
    if not _may_edit_task_of(principal, task.team_id):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "you may delete tasks only of your own teams")
    if session.scalar(select(TaskSegment.id).where(TaskSegment.task_id == task_id).limit(1)) is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, "the task has recorded segments; rename it instead")
    session.delete(task)
    session.commit()


# ---- policies -------------------------------------------------------------------------------------


def _policy_out(team_id: int, policy: RotationPolicy | None) -> PolicyOut:
    if policy is None:
        return PolicyOut(
            team_id=team_id, max_task_min=None, max_high_load_min=None, min_profile_change_deg=5.0
        )
    return PolicyOut.model_validate(policy)


@router.get("/teams/{team_id}/rotation/policy", response_model=PolicyOut)
def get_policy(
    team_id: Id, principal: Principal = Depends(current_principal), session: Session = Depends(get_session)
) -> PolicyOut:
    """The team's policy (no limits when none was set)."""
    visible_team(session, principal, team_id)
    return _policy_out(
        team_id, session.scalar(select(RotationPolicy).where(RotationPolicy.team_id == team_id))
    )


@router.put("/teams/{team_id}/rotation/policy", response_model=PolicyOut)
def put_policy(
    team_id: Id,
    body: PolicyIn,
    principal: Principal = Depends(managers),
    session: Session = Depends(get_session),
) -> PolicyOut:
    visible_team(session, principal, team_id)
    policy = session.scalar(select(RotationPolicy).where(RotationPolicy.team_id == team_id))
    if policy is None:
        policy = RotationPolicy(team_id=team_id)
        session.add(policy)
    policy.max_task_min = body.max_task_min
    policy.max_high_load_min = body.max_high_load_min
    policy.min_profile_change_deg = body.min_profile_change_deg
    session.commit()
    return _policy_out(team_id, policy)


# ---- segments -------------------------------------------------------------------------------------


@router.get("/workers/{worker_id}/segments", response_model=list[SegmentOut])
def list_segments(
    worker_id: Id,
    # Annotated, not `= Query(...)`: with a default FastAPI drops Day's validator.
    day: Annotated[Day, Query(alias="date", description="The worker's local day (YYYY-MM-DD)")],
    principal: Principal = Depends(current_principal),
    session: Session = Depends(get_session),
) -> list[TaskSegment]:
    worker = visible_worker(session, principal, worker_id)
    t0, t1 = day_bounds(worker, day)
    return list(_segments(session, worker_id, t0, t1))


def _segments(session: Session, worker_id: int, t0: int, t1: int) -> list[TaskSegment]:
    return list(
        session.scalars(
            select(TaskSegment)
            .where(TaskSegment.worker_id == worker_id, TaskSegment.end_s > t0, TaskSegment.start_s < t1)
            .order_by(TaskSegment.start_s)
        )
    )


@router.post("/workers/{worker_id}/segments", response_model=SegmentOut, status_code=status.HTTP_201_CREATED)
def add_segment(
    worker_id: Id,
    body: SegmentIn,
    principal: Principal = Depends(current_principal),
    session: Session = Depends(get_session),
) -> TaskSegment:
    """Record that the worker did a task from start_s to end_s (unix seconds, end exclusive).
    Workers log their own; ergonomists those of their teams.  Overlapping segments are refused."""
    worker = visible_worker(session, principal, worker_id)
    if body.end_s <= body.start_s:
        raise HTTPException(422, "end_s must be after start_s")
    if body.end_s - body.start_s > 24 * 3600:
        raise HTTPException(422, "a segment is at most 24 h long")
    task = _task(session, body.task_id)
    if task.team_id is not None and task.team_id != worker.team_id:
        raise HTTPException(422, f"task {task.id} belongs to another team")
    if _segments(session, worker_id, body.start_s, body.end_s):
        raise HTTPException(status.HTTP_409_CONFLICT, "the segment overlaps a recorded one")
    segment = TaskSegment(
        worker_id=worker_id, task_id=task.id, start_s=body.start_s, end_s=body.end_s, source="api"
    )
    session.add(segment)
    session.commit()
    return segment


@router.delete("/workers/{worker_id}/segments/{segment_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_segment(
    worker_id: Id,
    segment_id: Id,
    principal: Principal = Depends(current_principal),
    session: Session = Depends(get_session),
) -> None:
    visible_worker(session, principal, worker_id)
    segment = session.get(TaskSegment, segment_id)
    if segment is None or segment.worker_id != worker_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"worker {worker_id} has no segment {segment_id}")
    session.delete(segment)
    session.commit()


# ---- compliance -----------------------------------------------------------------------------------


def policy_and_tasks(rot: ModuleType, session: Session, team_id: int | None) -> tuple[Any, dict[int, Any]]:
    """The team's rotation.Policy (no limits when none was set) and the tasks it may use, by id."""
    row = session.scalar(select(RotationPolicy).where(RotationPolicy.team_id == team_id)) if team_id else None
    policy = (
        rot.Policy(row.max_task_min, row.max_high_load_min, row.min_profile_change_deg)
        if row is not None
        else rot.Policy(None, None)
    )
    query = select(Task).where(Task.team_id.is_(None) | (Task.team_id == team_id))
    tasks = {t.id: rot.Task(t.id, t.name, t.load_class) for t in session.scalars(query)}
    return policy, tasks


def day_segments(
    rot: ModuleType, session: Session, worker: Worker, day: dt.date, tasks: dict[int, Any], infer: bool
) -> tuple[list[Any], Any]:
    """The worker-day's task segments as compliance counts them, and its minutes: segments
    recorded (API) plus those from the device's task button; inferred from activity only when
    asked and nothing was recorded.  Segments are cut to the day, sorted by start."""
    t0, t1 = day_bounds(worker, day)
    # Plain rows of the four columns MinuteSeries reads: the team page judges every worker-day of
    # eight weeks, and ORM objects of all their minutes made it take seconds (bench/load.py).
    m = MinuteSummary
    minute_rows = session.execute(
        select(m.start_s, m.worn_s, m.flexion_bins, m.activity_s)
        .where(m.worker_id == worker.id, m.start_s >= t0, m.start_s < t1)
        .order_by(m.start_s, m.seq)
    ).all()
    minutes = rot.MinuteSeries.from_rows(minute_rows) if minute_rows else rot.MinuteSeries.empty()
    segments = [
        rot.Segment(s.task_id, max(s.start_s, t0), min(s.end_s, t1), s.source)
        for s in _segments(session, worker.id, t0, t1)
    ]
    if not any(s.source == "button" for s in segments):
        buttons = session.scalars(
            select(Event)
            .where(
                Event.worker_id == worker.id, Event.rtype == "button", Event.time_s >= t0, Event.time_s < t1
            )
            .order_by(Event.time_s, Event.seq)
        ).all()
        if buttons:
            events = [{"time_s": e.time_s, **e.fields} for e in buttons]
            segments += rot.segments_from_button_events(events, t0, t1, sorted(tasks))
    if not segments and infer:
        segments = rot.infer_segments(minutes)
    segments.sort(key=lambda s: s.start_s)
    return segments, minutes


def day_compliance(
    rot: ModuleType,
    session: Session,
    worker: Worker,
    day: dt.date,
    policy: Any,
    tasks: dict[int, Any],
    infer: bool,
) -> Any:
    """The worker-day's compliance (rotation.day_compliance) over day_segments'."""
    segments, minutes = day_segments(rot, session, worker, day, tasks, infer)
    return rot.day_compliance(segments, minutes, policy, tasks)


@router.get("/workers/{worker_id}/rotation/{day}")
def worker_rotation(
    worker_id: Id,
    day: Day,
    infer: bool = Query(False, description="Infer segments from activity when none were recorded"),
    principal: Principal = Depends(current_principal),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Rotation compliance of a worker-day (companion.rotation.DayCompliance.as_dict()), with the
    team's policy it was judged by and the task segments it counted (source: button, api or
    inferred; an inferred segment's task_id is the index of its activity class)."""
    worker = visible_worker(session, principal, worker_id)
    rot = rotation_module()
    policy, tasks = policy_and_tasks(rot, session, worker.team_id)
    segments, minutes = day_segments(rot, session, worker, day, tasks, infer)
    result = rot.day_compliance(segments, minutes, policy, tasks)
    return {
        "worker_id": worker_id,
        "date": day.isoformat(),
        **result.as_dict(),
        "policy": dataclasses.asdict(policy),
        "segments": [
            {"task_id": s.task_id, "start_s": s.start_s, "end_s": s.end_s, "source": s.source}
            for s in segments
        ],
    }


_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")


def parse_week(week: str | None) -> dt.date:
    """The Monday of an ISO week "YYYY-Www" (default: this week)."""
    if week is None:
        today = dt.date.today()
        return today - dt.timedelta(days=today.weekday())
    match = _WEEK.match(week)
    try:
        if match is None:
            raise ValueError(week)
        return dt.date.fromisocalendar(int(match[1]), int(match[2]), 1)
    except ValueError:
        raise HTTPException(422, f"week must be like 2026-W48, not {week!r}") from None


def worked_days(session: Session, worker: Worker, days: list[dt.date]) -> list[bool]:
    """Whether the worker has minutes on each of `days` (local days), in one query: the team page
    asks this for every worker-day of eight weeks, and one query per day made it slow."""
    params: dict[str, int] = {"worker_id": worker.id}
    for k, day in enumerate(days):
        params[f"lo{k}"], params[f"hi{k}"] = day_bounds(worker, day)
    return [bool(v) for v in session.execute(_worked_statement(len(days)), params).one()]


@lru_cache(maxsize=8)
def _worked_statement(n_days: int) -> Executable:
    # Built once: constructing the expression cost more than running it, eight weeks × a team's
    # workers times per team page.
    m = MinuteSummary
    return select(
        *(
            exists().where(
                m.worker_id == bindparam("worker_id"),
                m.start_s >= bindparam(f"lo{k}"),
                m.start_s < bindparam(f"hi{k}"),
            )
            for k in range(n_days)
        )
    )


@router.get("/teams/{team_id}/rotation")
def team_rotation(
    team_id: Id,
    week: str | None = Query(None, description="ISO week, e.g. 2026-W48; default: this week"),
    infer: bool = Query(False),
    principal: Principal = Depends(current_principal),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Per worker of the team: each worked day's compliance and the week's totals."""
    visible_team(session, principal, team_id)
    monday = parse_week(week)
    rot = rotation_module()
    return team_rotation_weeks(rot, session, team_id, [monday], infer)[0]


def team_rotation_weeks(
    rot: ModuleType, session: Session, team_id: int, mondays: list[dt.date], infer: bool
) -> list[dict[str, Any]]:
    """GET /api/teams/{id}/rotation's answer for each ISO week starting on `mondays`, from one
    set of queries (policy, tasks, workers, then the minutes, segments and button presses of the
    whole span): the team page shows eight weeks, and a set of queries per worker-day made it the
    slowest page under load (bench/load.py).  A day is worked when it has minutes, as in
    worked_days; its segments and minutes are those day_segments reads."""
    policy_row = session.scalar(select(RotationPolicy).where(RotationPolicy.team_id == team_id))
    policy, tasks = policy_and_tasks(rot, session, team_id)
    workers = list(session.scalars(select(Worker).where(Worker.team_id == team_id).order_by(Worker.id)))
    week_days = {monday: [monday + dt.timedelta(days=offset) for offset in range(7)] for monday in mondays}
    days = sorted({day for week in week_days.values() for day in week})
    # Each worker's local-day bounds, computed once per time zone (a team mostly shares one: per
    # worker-day it was a fifth of the page's time); the span of all of them bounds the queries.
    by_zone: dict[str, dict[dt.date, tuple[int, int]]] = {}
    for zone in {w.timezone or "UTC" for w in workers}:
        lo_s, hi_s = day_bounds_s(days, ZoneInfo(zone))
        by_zone[zone] = dict(zip(days, zip(lo_s.tolist(), hi_s.tolist(), strict=True), strict=True))
    bounds = {w.id: by_zone[w.timezone or "UTC"] for w in workers}
    span_lo = min((b[0] for per_day in by_zone.values() for b in per_day.values()), default=0)
    span_hi = max((b[1] for per_day in by_zone.values() for b in per_day.values()), default=0)
    ids = [w.id for w in workers]
    starts_of: dict[int, list[int]] = {i: [] for i in ids}
    segments_of: dict[int, list[TaskSegment]] = {i: [] for i in ids}
    buttons_of: dict[int, list[Event]] = {i: [] for i in ids}
    m = MinuteSummary
    if ids:
        # Which days were worked: the minutes' start times only (the index answers it); their
        # histograms are read below only for days with task segments to judge.
        for worker_id, start_s in session.execute(
            select(m.worker_id, m.start_s)
            .where(m.worker_id.in_(ids), m.start_s >= span_lo, m.start_s < span_hi)
            .order_by(m.worker_id, m.start_s)
        ):
            starts_of[cast(int, worker_id)].append(start_s)
        for segment in session.scalars(
            select(TaskSegment)
            .where(TaskSegment.worker_id.in_(ids), TaskSegment.end_s > span_lo, TaskSegment.start_s < span_hi)
            .order_by(TaskSegment.worker_id, TaskSegment.start_s)
        ):
            segments_of[segment.worker_id].append(segment)
        for event in session.scalars(
            select(Event)
            .where(
                Event.worker_id.in_(ids),
                Event.rtype == "button",
                Event.time_s >= span_lo,
                Event.time_s < span_hi,
            )
            .order_by(Event.worker_id, Event.time_s, Event.seq)
        ):
            buttons_of[cast(int, event.worker_id)].append(event)

    # Each worked day's segments (recorded, else from button presses); the days with none (and
    # no inference asked) track no minute, so their compliance needs no minutes at all.
    day_segments_of: dict[tuple[int, dt.date], list[Any]] = {}
    for worker in workers:
        starts = starts_of[worker.id]
        for day in days:
            t0, t1 = bounds[worker.id][day]
            if bisect.bisect_left(starts, t0) == bisect.bisect_left(starts, t1):
                continue  # no minutes: not a worked day
            segments = [
                rot.Segment(s.task_id, max(s.start_s, t0), min(s.end_s, t1), s.source)
                for s in segments_of[worker.id]
                if s.end_s > t0 and s.start_s < t1
            ]
            if not any(s.source == "button" for s in segments):
                events = [
                    {"time_s": e.time_s, **e.fields} for e in buttons_of[worker.id] if t0 <= e.time_s < t1
                ]
                if events:
                    segments += rot.segments_from_button_events(events, t0, t1, sorted(tasks))
            day_segments_of[worker.id, day] = segments
    judged = [key for key, segments in day_segments_of.items() if segments or infer]
    rows_of: dict[int, list[Any]] = {}
    if judged:
        judged_ids = sorted({w for w, _ in judged})
        lo = min(bounds[w][d][0] for w, d in judged)
        hi = max(bounds[w][d][1] for w, d in judged)
        rows_of = {w: [] for w in judged_ids}
        for row in session.execute(
            select(m.worker_id, m.start_s, m.worn_s, m.flexion_bins, m.activity_s)
            .where(m.worker_id.in_(judged_ids), m.start_s >= lo, m.start_s < hi)
            .order_by(m.worker_id, m.start_s, m.seq)
        ):
            rows_of[row.worker_id].append(row)
    row_starts = {w: [r.start_s for r in rows] for w, rows in rows_of.items()}
    compliance: dict[tuple[int, dt.date], Any] = {}  # worked days only
    for (worker_id, day), segments in day_segments_of.items():
        minutes = rot.MinuteSeries.empty()  # the same answer as the day's minutes with no segment
        if segments or infer:
            t0, t1 = bounds[worker_id][day]
            starts = row_starts[worker_id]
            rows = rows_of[worker_id][bisect.bisect_left(starts, t0) : bisect.bisect_left(starts, t1)]
            minutes = rot.MinuteSeries.from_rows(rows)
        if not segments and infer:
            segments = rot.infer_segments(minutes)
        segments.sort(key=lambda s: s.start_s)
        compliance[worker_id, day] = rot.day_compliance(segments, minutes, policy, tasks)

    policy_out = _policy_out(team_id, policy_row).model_dump()
    answers = []
    for monday in mondays:
        workers_out = []
        all_days = []
        for worker in workers:
            worked = [
                (d, compliance[worker.id, d]) for d in week_days[monday] if (worker.id, d) in compliance
            ]
            all_days += [c for _, c in worked]
            workers_out.append(
                {
                    "worker_id": worker.id,
                    "name": worker.name,
                    "days": [{"date": d.isoformat(), **c.as_dict()} for d, c in worked],
                    "week": rot.week_compliance([c for _, c in worked]).as_dict(),
                }
            )
        iso = monday.isocalendar()
        answers.append(
            {
                "team_id": team_id,
                "week": f"{iso.year}-W{iso.week:02d}",
                "policy": policy_out,
                "workers": workers_out,
                "team": rot.week_compliance(all_days).as_dict(),
            }
        )
    return answers
