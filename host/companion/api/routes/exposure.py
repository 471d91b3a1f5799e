"""Daily exposure per worker-day, team summaries, CSV exports, minute timelines."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Query, Response, status
from sqlalchemy import exc as sa_exc
from sqlalchemy import select
from sqlalchemy.orm import Session

import protocol
from companion import exposure
from companion.api.deps import Principal, current_principal, get_session, visible_team, visible_worker
from companion.api.schemas import (
    Day,
    DayOut,
    Id,
    MinuteOut,
    SegmentOut,
    TeamSummaryOut,
    TeamWorkerSummary,
    TimelineOut,
)
from companion.store.db import lost_race
from companion.store.models import DailyExposure, Event, MinuteSummary, TaskSegment, Worker

router = APIRouter(tags=["exposure"])

MAX_RANGE_DAYS = 366
FROM = Query(None, alias="from", description="First day (YYYY-MM-DD); default: 30 days before `to`")
TO = Query(None, alias="to", description="Last day, inclusive (YYYY-MM-DD); default: today")


def date_range(date_from: dt.date | None, date_to: dt.date | None) -> tuple[dt.date, dt.date]:
    date_to = date_to or dt.date.today()
    date_from = date_from or date_to - dt.timedelta(days=29)
    if date_from > date_to:
        raise HTTPException(422, "`from` is after `to`")
    if (date_to - date_from).days >= MAX_RANGE_DAYS:
        raise HTTPException(422, f"at most {MAX_RANGE_DAYS} days at once")
    return date_from, date_to


def worker_days(
    session: Session, worker_ids: Iterable[int], date_from: dt.date, date_to: dt.date
) -> list[DailyExposure]:
    """The stored days of these workers in the range, recomputing the dirty (or outdated) ones
    first so late-arriving data shows up; sorted by worker then day."""
    ids = list(worker_ids)
    if not ids:
        return []
    in_range = (
        DailyExposure.worker_id.in_(ids),
        DailyExposure.day >= date_from,
        DailyExposure.day <= date_to,
    )
    stale = session.execute(
        select(DailyExposure.worker_id, DailyExposure.day).where(
            *in_range,
            DailyExposure.dirty.is_(True) | (DailyExposure.schema_version != exposure.SCHEMA_VERSION),
        )
    ).all()
    if stale:
        refresh_days(session, [(worker_id, day) for worker_id, day in stale])
    return list(
        session.scalars(
            select(DailyExposure).where(*in_range).order_by(DailyExposure.worker_id, DailyExposure.day)
        )
    )


def team_days(
    session: Session, worker_ids: list[int], ranges: list[tuple[dt.date, dt.date]]
) -> list[DailyExposure]:
    """worker_days over the union of several date ranges (inclusive), one call per run of
    overlapping or adjacent ranges (so one for the team page's default range and its eight
    weeks, without loading the years between a range and a week far from it); sorted by worker
    then day, each worker-day once."""
    merged: list[list[dt.date]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + dt.timedelta(days=1):
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    rows = [r for lo, hi in merged for r in worker_days(session, worker_ids, lo, hi)]
    if len(merged) > 1:
        rows.sort(key=lambda r: (r.worker_id, r.day))
    return rows


# Runs of a recompute that lost a race with uploads of the same days before the answer is a 503.
REFRESH_ATTEMPTS = 3


def refresh_days(session: Session, worker_days: list[tuple[int, dt.date]]) -> None:
    """Recompute the stale ones of `worker_days` in a transaction of their own (committed), run
    again when it loses a race with a concurrent upload or recompute (exposure.refresh_stale)."""
    # What the request read so far ends here: SQLite refuses a write in a transaction whose
    # snapshot another connection's commit has made old.
    session.commit()
    for attempt in range(1, REFRESH_ATTEMPTS + 1):
        try:
            exposure.refresh_stale(session, worker_days)
            session.commit()
            return
        except (sa_exc.DBAPIError, sa_exc.TimeoutError) as error:
            session.rollback()
            if not lost_race(error):
                raise
            if attempt == REFRESH_ATTEMPTS:
                raise HTTPException(
                    status.HTTP_503_SERVICE_UNAVAILABLE,
                    "the database is busy with uploads of these days: ask again",
                    {"Retry-After": "1"},
                ) from None


def day_out(row: DailyExposure) -> DayOut:
    return DayOut(worker_id=row.worker_id, date=row.day, computed_at=row.computed_at, metrics=row.metrics)


def flatten(metrics: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested metrics as flat CSV columns: {"flexion": {"percentiles_deg": {"p50": 12}}} ->
    {"flexion.percentiles_deg.p50": 12}."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _metric_columns() -> list[str]:
    # The column order of an empty day's metrics: stable whatever the data.
    empty = exposure.daily_exposure(
        exposure.MinuteArrays.empty(), exposure.BoutArrays.empty(), exposure.AlertArrays.empty(), 1
    )[0]
    return list(flatten(empty))


METRIC_COLUMNS = _metric_columns()


def csv_response(rows: list[dict[str, Any]], columns: list[str], filename: str) -> Response:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return Response(
        buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/workers/{worker_id}/days", response_model=list[DayOut])
def list_days(
    worker_id: Id,
    date_from: Day | None = FROM,
    date_to: Day | None = TO,
    principal: Principal = Depends(current_principal),
    session: Session = Depends(get_session),
) -> list[DayOut]:
    """The worker's days with data in the range."""
    visible_worker(session, principal, worker_id)
    lo, hi = date_range(date_from, date_to)
    return [day_out(r) for r in worker_days(session, [worker_id], lo, hi)]


@router.get("/workers/{worker_id}/days.csv", response_class=Response)
def days_csv(
    worker_id: Id,
    date_from: Day | None = FROM,
    date_to: Day | None = TO,
    principal: Principal = Depends(current_principal),
    session: Session = Depends(get_session),
) -> Response:
    """One CSV row per worker-day with data; columns as docs/metrics.md names them."""
    worker = visible_worker(session, principal, worker_id)
    lo, hi = date_range(date_from, date_to)
    rows = [
        {"worker_id": worker.id, "worker": worker.name, "date": r.day.isoformat(), **flatten(r.metrics or {})}
        for r in worker_days(session, [worker_id], lo, hi)
    ]
    return csv_response(
        rows, ["worker_id", "worker", "date", *METRIC_COLUMNS], f"worker-{worker_id}-days.csv"
    )


@router.get("/workers/{worker_id}/days/{day}", response_model=DayOut)
def get_day(
    worker_id: Id,
    day: Day,
    principal: Principal = Depends(current_principal),
    session: Session = Depends(get_session),
) -> DayOut:
    visible_worker(session, principal, worker_id)
    rows = worker_days(session, [worker_id], day, day)
    if not rows:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no data for worker {worker_id} on {day}")
    return day_out(rows[0])


def _pct(part: float, whole: float) -> float | None:
    return round(100.0 * part / whole, 2) if whole > 0 else None


def summarise(worker_id: int, name: str, days: list[DailyExposure]) -> TeamWorkerSummary:
    """Totals over worker-days: times are summed, percentiles are worn-time-weighted means of the
    daily percentiles (an approximation: the exact pooled percentile needs the histograms)."""
    metrics = [d.metrics for d in days if d.metrics]
    measured = sum(m["measured_s"] for m in metrics)
    above20 = sum(m["flexion"]["time_above_s"]["20"] for m in metrics)
    above60 = sum(m["flexion"]["time_above_s"]["60"] for m in metrics)

    def weighted(pkey: str) -> float | None:
        pairs = [(m["flexion"]["percentiles_deg"][pkey], m["measured_s"]) for m in metrics]
        pairs = [(v, w) for v, w in pairs if v is not None and w > 0]
        total = sum(w for _, w in pairs)
        return round(sum(v * w for v, w in pairs) / total, 2) if total else None

    alerts = sum(m["alerts"]["count"] for m in metrics)
    corrected = [
        (m["alerts"]["corrected_pct"], m["alerts"]["count"])
        for m in metrics
        if m["alerts"]["corrected_pct"] is not None
    ]
    n_corr = sum(c for _, c in corrected)
    return TeamWorkerSummary(
        worker_id=worker_id,
        name=name,
        days=len(metrics),
        worn_h=round(sum(m["worn_s"] for m in metrics) / 3600.0, 2),
        flexion_above_20_pct=_pct(above20, measured),
        flexion_above_60_pct=_pct(above60, measured),
        flexion_p50_deg=weighted("p50"),
        flexion_p90_deg=weighted("p90"),
        holding_time_violations=sum(m["holding_time"]["violations"] for m in metrics),
        alerts=alerts,
        alert_corrected_pct=round(sum(p * c for p, c in corrected) / n_corr, 2) if n_corr else None,
    )


def team_workers(session: Session, team_id: int) -> list[Worker]:
    """The team's workers in the order team summaries list them (by id)."""
    return list(session.scalars(select(Worker).where(Worker.team_id == team_id).order_by(Worker.id)))


def team_summary(session: Session, team_id: int, lo: dt.date, hi: dt.date) -> TeamSummaryOut:
    workers = team_workers(session, team_id)
    return summary_of_rows(team_id, workers, worker_days(session, [w.id for w in workers], lo, hi), lo, hi)


def summary_of_rows(
    team_id: int, workers: list[Worker], rows: list[DailyExposure], lo: dt.date, hi: dt.date
) -> TeamSummaryOut:
    """team_summary over rows already loaded by worker_days (sorted by worker then day), of a
    range that may be wider than lo..hi: the team page sums eight weeks out of one load."""
    rows = [r for r in rows if lo <= r.day <= hi]
    by_worker: dict[int, list[DailyExposure]] = {}
    for r in rows:
        by_worker.setdefault(r.worker_id, []).append(r)
    return TeamSummaryOut(
        team_id=team_id,
        date_from=lo,
        date_to=hi,
        workers=[summarise(w.id, w.name, by_worker.get(w.id, [])) for w in workers],
        team=summarise(0, "team", rows),
    )


@router.get("/teams/{team_id}/summary", response_model=TeamSummaryOut)
def get_team_summary(
    team_id: Id,
    date_from: Day | None = FROM,
    date_to: Day | None = TO,
    principal: Principal = Depends(current_principal),
    session: Session = Depends(get_session),
) -> TeamSummaryOut:
    """Per worker of the team, and the whole team: worn hours, % time > 20° and > 60°,
    flexion p50/p90, holding-time violations, alerts."""
    visible_team(session, principal, team_id)
    lo, hi = date_range(date_from, date_to)
    return team_summary(session, team_id, lo, hi)


@router.get("/teams/{team_id}/summary.csv", response_class=Response)
def team_summary_csv(
    team_id: Id,
    date_from: Day | None = FROM,
    date_to: Day | None = TO,
    principal: Principal = Depends(current_principal),
    session: Session = Depends(get_session),
) -> Response:
    """One CSV row per worker-day of the team (all metrics), for spreadsheets."""
    visible_team(session, principal, team_id)
    lo, hi = date_range(date_from, date_to)
    workers = {w.id: w for w in session.scalars(select(Worker).where(Worker.team_id == team_id))}
    rows = [
        {
            "team_id": team_id,
            "worker_id": r.worker_id,
            "worker": workers[r.worker_id].name,
            "date": r.day.isoformat(),
            **flatten(r.metrics or {}),
        }
        for r in worker_days(session, list(workers), lo, hi)
    ]
    columns = ["team_id", "worker_id", "worker", "date", *METRIC_COLUMNS]
    return csv_response(rows, columns, f"team-{team_id}-{lo}-{hi}.csv")


def day_bounds(worker: Worker, day: dt.date) -> tuple[int, int]:
    lo, hi = exposure.day_bounds_s([day], ZoneInfo(worker.timezone or "UTC"))
    return int(lo[0]), int(hi[0])


@router.get("/workers/{worker_id}/days/{day}/timeline", response_model=TimelineOut)
def get_timeline(
    worker_id: Id,
    day: Day,
    bins: bool = Query(False, description="Include each minute's flexion histogram"),
    principal: Principal = Depends(current_principal),
    session: Session = Depends(get_session),
) -> TimelineOut:
    """The worker-day minute by minute: flexion p50/p90 and seconds above 20° per minute,
    dominant activity, alerts, task segments."""
    worker = visible_worker(session, principal, worker_id)
    t0, t1 = day_bounds(worker, day)
    m = MinuteSummary
    rows = session.execute(
        select(m.start_s, m.worn_s, m.flexion_bins, m.activity_s, m.alert_count)
        .where(m.worker_id == worker_id, m.start_s >= t0, m.start_s < t1)
        .order_by(m.start_s, m.seq)
    ).all()
    minutes: list[MinuteOut] = []
    if rows:
        flex = (
            np.frombuffer(b"".join(r.flexion_bins for r in rows), np.uint8)
            .reshape(len(rows), -1)
            .astype(np.int64)
        )
        act = np.frombuffer(b"".join(r.activity_s for r in rows), np.uint8).reshape(len(rows), -1)
        pct = exposure.apdf_percentiles_deg(flex, (50, 90)).tolist()
        above20 = exposure.time_above_s(flex, 20).tolist()
        dominant = act.argmax(axis=1).tolist()
        has_activity = (act.sum(axis=1) > 0).tolist()
        for i, r in enumerate(rows):
            minutes.append(
                MinuteOut(
                    start_s=r.start_s,
                    worn_s=r.worn_s,
                    flexion_p50_deg=_finite(pct[i][0]),
                    flexion_p90_deg=_finite(pct[i][1]),
                    flexion_above_20_s=int(above20[i]),
                    alerts=r.alert_count,
                    dominant_activity=protocol.ACTIVITIES[dominant[i]] if has_activity[i] else None,
                    flexion_bins_s=list(r.flexion_bins) if bins else None,
                )
            )
    alerts = [
        {"time_s": e.time_s, **e.fields}
        for e in session.scalars(
            select(Event)
            .where(
                Event.worker_id == worker_id, Event.rtype == "alert", Event.time_s >= t0, Event.time_s < t1
            )
            .order_by(Event.time_s, Event.seq)
        )
    ]
    segments = session.scalars(
        select(TaskSegment)
        .where(TaskSegment.worker_id == worker_id, TaskSegment.end_s > t0, TaskSegment.start_s < t1)
        .order_by(TaskSegment.start_s)
    ).all()
    return TimelineOut(
        worker_id=worker_id,
        date=day,
        timezone=worker.timezone,
        day_start_s=t0,
        day_end_s=t1,
        minutes=minutes,
        alerts=alerts,
        segments=[SegmentOut.model_validate(s) for s in segments],
    )


def _finite(value: float) -> float | None:
    return None if value != value else round(value, 2)  # NaN (no measured seconds) -> None
