"""Daily load exposure: the per worker-day metrics of docs/metrics.md.

Every metric is one function below, vectorised with numpy over arrays of many worker-days at
once (no Python loops over minutes or events).  Inputs are column arrays:

- :class:`MinuteArrays`: one row per minute summary, with ``day_index`` saying which of the
  ``n_days`` worker-days it belongs to (rows of one day need not be adjacent, except where a
  function says it wants them sorted by (day, start_s));
- :class:`BoutArrays`: BOUT events (continuous spells with flexion above 20°, > 4 s);
- :class:`AlertArrays`: ALERT events.

:func:`daily_exposure` computes all metrics of many days and returns one JSON-ready dict per
day (``SCHEMA_VERSION`` names its layout); :func:`recompute_daily_exposure` and
:func:`recompute_dirty` load a worker's days from the store and save the results in the
``daily_exposure`` table.

Angles: the minute summary carries two 20-bin histograms (protocol.ANGLE_EDGES_DEG: bin 0 is
< 0°, bin k = [5(k-1), 5k)°, bin 19 is >= 90°).  *Inclination* (absolute trunk inclination from
vertical, zero-referenced like ActiPASS) feeds the ISO 11226 zones and the ActiPASS-style
percentiles and times above; *flexion* (relative to the worker's calibrated neutral) feeds the
same functions again under ``"flexion"``, and the bout-based metrics (the firmware's bouts and
alerts are flexion-based).  For histogram maths the two open bins get a nominal 5° width:
bin 0 is taken as [-5, 0)° and bin 19 as [90, 95)°.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Dialect, Insert, Table, and_, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

import protocol
from companion.store.bulk import Prepared
from companion.store.models import DailyExposure, Event, MinuteSummary, Worker, utc_now

SCHEMA_VERSION = 1

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]

N_ANGLE_BINS = protocol.ANGLE_BINS
BIN_WIDTH_DEG = 5.0
# Nominal lower edge and mid-point of each angle bin (open bins given a 5° width).
BIN_LOW_DEG: FloatArray = np.array([-5.0, *protocol.ANGLE_EDGES_DEG], dtype=np.float64)
BIN_MID_DEG: FloatArray = BIN_LOW_DEG + BIN_WIDTH_DEG / 2

TIME_ABOVE_THRESHOLDS_DEG = (20, 30, 45, 60, 90)
PERCENTILES = (10, 50, 90, 95, 99)
DEGREE_MINUTES_THRESHOLD_DEG = 20
ISO_ZONES = ("extension", "acceptable", "conditional", "not_acceptable")

# ISO 11226:2000 trunk inclination holding time (Figure 2, after Miedema et al. 1997):
# 4 min at 20° falling linearly to 1 min at 60°.
HOLDING_LIMIT_FROM = (20.0, 240.0)  # (angle_deg, max holding time s)
HOLDING_LIMIT_TO = (60.0, 60.0)


@dataclass
class MinuteArrays:
    """Minute summaries as columns; `day_index` (0..n_days-1) assigns each to a worker-day."""

    day_index: IntArray  # (n,)
    start_s: IntArray  # (n,) unix seconds
    worn_s: IntArray  # (n,)
    flexion_s: IntArray  # (n, 20) seconds per flexion bin
    inclination_s: IntArray  # (n, 20) seconds per inclination bin
    activity_s: IntArray  # (n, 5) seconds per protocol.ACTIVITIES class
    longest_bout_s: IntArray  # (n,)

    @classmethod
    def empty(cls) -> MinuteArrays:
        z = np.zeros(0, dtype=np.int64)
        return cls(
            z,
            z,
            z,
            np.zeros((0, N_ANGLE_BINS), np.int64),
            np.zeros((0, N_ANGLE_BINS), np.int64),
            np.zeros((0, len(protocol.ACTIVITIES)), np.int64),
            z,
        )


@dataclass
class BoutArrays:
    """BOUT events as columns."""

    day_index: IntArray
    duration_s: IntArray
    mean_flexion_deg: FloatArray

    @classmethod
    def empty(cls) -> BoutArrays:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64))


@dataclass
class AlertArrays:
    """ALERT events as columns; `time_to_correct_s` is NaN when never corrected."""

    day_index: IntArray
    time_to_correct_s: FloatArray
    outcome: IntArray  # protocol.OUTCOMES code

    @classmethod
    def empty(cls) -> AlertArrays:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.float64), np.zeros(0, np.int64))


# ---- aggregation helpers ----------------------------------------------------------------------


def per_day_sum(day_index: IntArray, values: NDArray[Any], n_days: int) -> NDArray[np.int64]:
    """Sum rows of `values` ((n,) or (n, k)) per day: (n_days,) or (n_days, k)."""
    values = np.asarray(values)
    if values.ndim == 1:
        return np.bincount(day_index, weights=values, minlength=n_days).round().astype(np.int64)
    k = values.shape[1]
    flat = (day_index[:, None] * k + np.arange(k)).ravel()
    summed = np.bincount(flat, weights=values.ravel(), minlength=n_days * k)
    return summed.round().astype(np.int64).reshape(n_days, k)


def per_day_max(day_index: IntArray, values: NDArray[Any], n_days: int) -> NDArray[np.int64]:
    """Largest value per day (0 for a day without rows)."""
    out = np.zeros(n_days, dtype=np.int64)
    np.maximum.at(out, day_index, np.asarray(values, dtype=np.int64))
    return out


def _bin_of_edge(threshold_deg: float) -> int:
    """Index of the first bin starting at `threshold_deg` (which must be a bin edge)."""
    edges = protocol.ANGLE_EDGES_DEG
    if threshold_deg not in edges:
        raise ValueError(f"{threshold_deg}° is not a histogram bin edge {edges}")
    return 1 + edges.index(threshold_deg)


# ---- the metrics --------------------------------------------------------------------------------


def worn_time_s(minutes: MinuteArrays, n_days: int) -> IntArray:
    """Worn time: sum of the minute summaries' `worn_s` per day."""
    return per_day_sum(minutes.day_index, minutes.worn_s, n_days)


def iso11226_zone_seconds(inclination_hist_s: IntArray) -> IntArray:
    """Seconds per ISO 11226 trunk zone from day inclination histograms (n_days, 20) →
    (n_days, 4) in ISO_ZONES order: extension (< 0°), acceptable [0, 20)°, conditional
    [20, 60)° (acceptable depending on holding time), not acceptable (>= 60°)."""
    h = inclination_hist_s
    b20, b60 = _bin_of_edge(20), _bin_of_edge(60)
    return np.stack(
        [h[:, 0], h[:, 1:b20].sum(axis=1), h[:, b20:b60].sum(axis=1), h[:, b60:].sum(axis=1)], axis=1
    )


def share_percent(part_s: NDArray[Any], whole_s: NDArray[Any]) -> FloatArray:
    """100 · part / whole per day (broadcast over extra columns of `part_s`); NaN if whole is 0."""
    whole = np.asarray(whole_s, dtype=np.float64)
    part = np.asarray(part_s, dtype=np.float64)
    if part.ndim == 2:
        whole = whole[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(whole > 0, 100.0 * part / np.where(whole > 0, whole, 1.0), np.nan)


def time_above_s(hist_s: IntArray, threshold_deg: float) -> IntArray:
    """Seconds at or above `threshold_deg` (a bin edge) per day from (n_days, 20) histograms.
    With 5° bins "above 20°" is exactly "in the bins from [20, 25)° up"."""
    return hist_s[:, _bin_of_edge(threshold_deg) :].sum(axis=1)


def apdf_percentiles_deg(hist_s: IntArray, percents: Sequence[float] = PERCENTILES) -> FloatArray:
    """Angle percentiles (APDF) per day: (n_days, len(percents)), NaN for a day without data.

    The p-th percentile is the angle below which p % of the day's time was spent, with the time
    of each 5° bin spread uniformly over the bin (linear interpolation of the cumulative
    distribution between bin edges; open bins nominally [-5, 0)° and [90, 95)°)."""
    h = hist_s.astype(np.float64)
    cum = np.cumsum(h, axis=1)  # time below each bin's upper edge
    total = cum[:, -1]
    target = total[:, None] * (np.asarray(percents, dtype=np.float64)[None, :] / 100.0)  # (D, P)
    idx = (cum[:, None, :] < target[:, :, None]).sum(axis=2)  # first bin reaching the target
    idx = np.minimum(idx, N_ANGLE_BINS - 1)
    below = np.take_along_axis(cum, idx, axis=1) - np.take_along_axis(h, idx, axis=1)
    in_bin = np.take_along_axis(h, idx, axis=1)
    frac = np.divide(target - below, in_bin, out=np.zeros_like(target), where=in_bin > 0)
    value = BIN_LOW_DEG[idx] + BIN_WIDTH_DEG * np.clip(frac, 0.0, 1.0)
    return np.where(total[:, None] > 0, value, np.nan)


def degree_minutes_above(hist_s: IntArray, threshold_deg: float = DEGREE_MINUTES_THRESHOLD_DEG) -> FloatArray:
    """Cumulative load: Σ over bins above `threshold_deg` (a bin edge) of
    (bin mid-point − threshold) × minutes in the bin, in degree-minutes, per day."""
    first = _bin_of_edge(threshold_deg)
    excess_deg = BIN_MID_DEG[first:] - threshold_deg
    return (hist_s[:, first:].astype(np.float64) @ excess_deg) / 60.0


def max_holding_time_s(angle_deg: NDArray[Any]) -> FloatArray:
    """ISO 11226 maximum acceptable holding time of a trunk inclination between 20° and 60°:
    240 s at 20° falling linearly to 60 s at 60° (NaN outside 20..60°)."""
    a = np.asarray(angle_deg, dtype=np.float64)
    (a0, t0), (a1, t1) = HOLDING_LIMIT_FROM, HOLDING_LIMIT_TO
    limit = t0 + (a - a0) * (t1 - t0) / (a1 - a0)
    return np.where((a >= a0) & (a <= a1), limit, np.nan)


def holding_time_violations(bouts: BoutArrays, n_days: int) -> tuple[IntArray, IntArray, FloatArray]:
    """Bouts held longer than allowed: per day (bouts checked, violations, excess seconds).

    A bout is checked when its mean flexion is within 20..60°; it violates when its duration is
    longer than max_holding_time_s(mean) (equal is not a violation); the excess is the sum of
    (duration − limit) over violating bouts."""
    limit = max_holding_time_s(bouts.mean_flexion_deg)
    checked = ~np.isnan(limit)
    over = np.where(checked, bouts.duration_s - np.where(checked, limit, 0.0), 0.0)
    violating = checked & (over > 0)
    n_checked = np.bincount(bouts.day_index, weights=checked, minlength=n_days).astype(np.int64)
    n_violating = np.bincount(bouts.day_index, weights=violating, minlength=n_days).astype(np.int64)
    excess = np.bincount(bouts.day_index, weights=np.where(violating, over, 0.0), minlength=n_days).astype(
        np.float64
    )
    return n_checked, n_violating, excess


def longest_spell_above_20_s(minutes: MinuteArrays, bouts: BoutArrays, n_days: int) -> IntArray:
    """Longest continuous spell with flexion above 20°: the longest BOUT of the day, or the
    longest within-minute spell (MINUTE.longest_bout_s) if that is longer (e.g. bouts lost)."""
    return np.maximum(
        per_day_max(bouts.day_index, bouts.duration_s, n_days),
        per_day_max(minutes.day_index, minutes.longest_bout_s, n_days),
    )


def longest_spell_above_60_s(minutes: MinuteArrays, n_days: int) -> IntArray:
    """Longest run of consecutive whole minutes spent entirely at or above 60° flexion, in
    seconds (a lower bound: the device logs no events for spells above 60°, so spells shorter
    than a whole minute, or the parts of a spell in the minutes around a run, are not seen).

    Rows must be sorted by (day_index, start_s)."""
    if len(minutes.start_s) == 0:
        return np.zeros(n_days, dtype=np.int64)
    full = time_above_s(minutes.flexion_s, 60) >= 60
    prev_full = np.concatenate([[False], full[:-1]])
    adjacent = np.concatenate([[False], np.diff(minutes.start_s) == 60]) & np.concatenate(
        [[False], np.diff(minutes.day_index) == 0]
    )
    starts = full & ~(prev_full & adjacent)
    run_id = np.cumsum(starts) - 1
    lengths = np.bincount(run_id[full], minlength=int(starts.sum()))
    return per_day_max(minutes.day_index[starts], lengths * 60, n_days)


def alert_response(alerts: AlertArrays, n_days: int) -> tuple[IntArray, FloatArray, FloatArray]:
    """Per day: (alerts, share corrected in %, median time to correct in s).

    Share corrected = alerts with outcome "corrected" / alerts (NaN without alerts); the median
    is over alerts with a time_to_correct_s (NaN if none)."""
    count = np.bincount(alerts.day_index, minlength=n_days).astype(np.int64)
    corrected = np.bincount(
        alerts.day_index, weights=alerts.outcome == protocol.OUTCOME_CORRECTED, minlength=n_days
    )
    share = share_percent(corrected, count)
    has_time = ~np.isnan(alerts.time_to_correct_s)
    day = alerts.day_index[has_time]
    times = alerts.time_to_correct_s[has_time]
    order = np.lexsort((times, day))
    day, times = day[order], times[order]
    n = np.bincount(day, minlength=n_days)
    first = np.concatenate([[0], np.cumsum(n)[:-1]])
    median = np.full(n_days, np.nan)
    some = n > 0
    lo = first[some] + (n[some] - 1) // 2
    hi = first[some] + n[some] // 2
    median[some] = (times[lo] + times[hi]) / 2
    return count, share, median


def activity_seconds(minutes: MinuteArrays, n_days: int) -> IntArray:
    """Seconds per protocol.ACTIVITIES class per day: (n_days, 5)."""
    return per_day_sum(minutes.day_index, minutes.activity_s, n_days)


# ---- all metrics of many days -------------------------------------------------------------------


def _num(value: Any) -> float | None:
    value = float(value)
    return None if np.isnan(value) else round(value, 3)


def _angle_family(hist_s: IntArray) -> tuple[FloatArray, IntArray, FloatArray]:
    pct = apdf_percentiles_deg(hist_s)
    above = np.stack([time_above_s(hist_s, t) for t in TIME_ABOVE_THRESHOLDS_DEG], axis=1)
    return pct, above, degree_minutes_above(hist_s)


def daily_exposure(
    minutes: MinuteArrays, bouts: BoutArrays, alerts: AlertArrays, n_days: int
) -> list[dict[str, Any]]:
    """All metrics of `n_days` worker-days: one JSON-ready dict per day (layout SCHEMA_VERSION).

    `minutes` must be sorted by (day_index, start_s) (for longest_spell_above_60_s)."""
    incl = per_day_sum(minutes.day_index, minutes.inclination_s, n_days)
    flex = per_day_sum(minutes.day_index, minutes.flexion_s, n_days)
    n_minutes = np.bincount(minutes.day_index, minlength=n_days)
    worn = worn_time_s(minutes, n_days)
    zones = iso11226_zone_seconds(incl)
    measured = incl.sum(axis=1)
    zone_pct = share_percent(zones, measured)
    families = {"inclination": _angle_family(incl), "flexion": _angle_family(flex)}
    checked, violations, excess = holding_time_violations(bouts, n_days)
    spell20 = longest_spell_above_20_s(minutes, bouts, n_days)
    spell60 = longest_spell_above_60_s(minutes, n_days)
    n_alerts, corrected_pct, median_ttc = alert_response(alerts, n_days)
    activity = activity_seconds(minutes, n_days)

    # Assembling the JSON is a loop over days (not rows), with plain Python numbers.
    zones_l, zone_pct_l, activity_l = zones.tolist(), zone_pct.tolist(), activity.tolist()
    fam_l = {name: (p.tolist(), a.tolist(), d.tolist()) for name, (p, a, d) in families.items()}
    out: list[dict[str, Any]] = []
    for i in range(n_days):
        day: dict[str, Any] = {
            "minutes": int(n_minutes[i]),
            "worn_s": int(worn[i]),
            "measured_s": int(measured[i]),
            "iso11226_s": dict(zip(ISO_ZONES, zones_l[i], strict=True)),
            "iso11226_pct": {z: _num(v) for z, v in zip(ISO_ZONES, zone_pct_l[i], strict=True)},
        }
        for name, (pct, above, dmin) in fam_l.items():
            day[name] = {
                "percentiles_deg": {f"p{p}": _num(v) for p, v in zip(PERCENTILES, pct[i], strict=True)},
                "time_above_s": {str(t): v for t, v in zip(TIME_ABOVE_THRESHOLDS_DEG, above[i], strict=True)},
                f"degree_minutes_above_{DEGREE_MINUTES_THRESHOLD_DEG}": _num(dmin[i]),
            }
        day["holding_time"] = {
            "bouts_checked": int(checked[i]),
            "violations": int(violations[i]),
            "excess_s": _num(excess[i]),
        }
        day["longest_spell_s"] = {"above_20": int(spell20[i]), "above_60": int(spell60[i])}
        day["alerts"] = {
            "count": int(n_alerts[i]),
            "corrected_pct": _num(corrected_pct[i]),
            "median_time_to_correct_s": _num(median_ttc[i]),
        }
        day["activity_s"] = dict(zip(protocol.ACTIVITIES, activity_l[i], strict=True))
        out.append(day)
    return out


# ---- worker-days in the store -------------------------------------------------------------------


def local_day(time_s: int, tz: ZoneInfo) -> dt.date:
    """The worker's local date of a unix time."""
    return dt.datetime.fromtimestamp(time_s, tz).date()


def local_days(times_s: Iterable[int], tz: ZoneInfo) -> list[dt.date]:
    """The worker-days (sorted) that unix times fall on, as load_worker_days assigns them: each
    day from its local midnight to the next.  Per batch of times, not per time: a few dates
    around the first and the last, and numpy puts every time in one of them."""
    times = times_s if isinstance(times_s, list) else list(times_s)
    if not times:
        return []
    # Most batches (a sync's few hours) lie within one day: its bounds settle it.
    t_min, t_max = min(times), max(times)
    day = local_day(t_min, tz)
    if local_day(t_max, tz) == day:
        lo, hi = day_bounds_s([day], tz)
        if lo[0] <= t_min and t_max < hi[0]:
            return [day]
    t_s = np.unique(np.array(times, dtype=np.int64))
    first, last = local_day(int(t_s[0]), tz), local_day(int(t_s[-1]), tz)
    one = dt.timedelta(days=1)
    if (last - first).days < len(t_s):
        candidates = [first - one + k * one for k in range((last - first).days + 3)]
    else:  # times far apart (a clock set wrong): only the dates around each
        candidates = sorted({local_day(int(t), tz) + k * one for t in t_s for k in (-1, 0, 1)})
    lo, hi = day_bounds_s(candidates, tz)
    idx, ok = _assign_days(t_s, lo, hi)
    return [candidates[i] for i in np.unique(idx[ok]).tolist()]


def day_bounds_s(days: Sequence[dt.date], tz: ZoneInfo) -> tuple[IntArray, IntArray]:
    """Unix-second bounds [start, end) of local days in `tz` (DST days are 23 or 25 h long)."""

    def midnight(d: dt.date) -> int:
        return int(dt.datetime.combine(d, dt.time(), tzinfo=tz).timestamp())

    lo = np.array([midnight(d) for d in days], dtype=np.int64)
    hi = np.array([midnight(d + dt.timedelta(days=1)) for d in days], dtype=np.int64)
    return lo, hi


def _assign_days(t_s: IntArray, lo: IntArray, hi: IntArray) -> tuple[IntArray, NDArray[np.bool_]]:
    # lo is sorted and the days do not overlap: the day of t is the last start <= t.
    idx = np.searchsorted(lo, t_s, side="right") - 1
    ok = idx >= 0
    ok[ok] = t_s[ok] < hi[idx[ok]]
    return idx, ok


def load_worker_days(
    session: Session, worker_id: int, days: Sequence[dt.date], tz: ZoneInfo
) -> tuple[MinuteArrays, BoutArrays, AlertArrays]:
    """The exposure inputs of one worker's `days` (sorted, distinct) from the store."""
    return load_workers_days(session, {worker_id: (list(days), tz)})[worker_id]


def load_workers_days(
    session: Session, wanted: dict[int, tuple[list[dt.date], ZoneInfo]]
) -> dict[int, tuple[MinuteArrays, BoutArrays, AlertArrays]]:
    """load_worker_days for several workers (each: its sorted, distinct days and time zone) with
    three queries per distinct span of days, not per worker: a dashboard view that meets a team's
    days made dirty by uploads recomputes them all, and 25 wearers' statements made up most of
    the team summary's time under load (bench/load.py)."""
    bounds = {w: day_bounds_s(days, tz) for w, (days, tz) in wanted.items()}
    by_span: dict[tuple[int, int], list[int]] = {}
    for w, (lo, hi) in bounds.items():
        by_span.setdefault((int(lo.min()), int(hi.max())), []).append(w)
    out: dict[int, tuple[MinuteArrays, BoutArrays, AlertArrays]] = {}
    for (t0, t1), ids in by_span.items():
        m = MinuteSummary
        minute_rows: dict[int, list[Any]] = {w: [] for w in ids}
        for row in session.execute(
            select(
                m.worker_id,
                m.start_s,
                m.worn_s,
                m.flexion_bins,
                m.inclination_bins,
                m.activity_s,
                m.longest_bout_s,
            )
            .where(m.worker_id.in_(ids), m.start_s >= t0, m.start_s < t1)
            .order_by(m.worker_id, m.start_s, m.seq)
        ):
            minute_rows[cast(int, row[0])].append(row[1:])

        def events(ids: list[int], t0: int, t1: int, rtype: str, *fields: str) -> dict[int, list[Any]]:
            e = Event
            cols = [e.fields[name].as_integer() for name in fields]
            found: dict[int, list[Any]] = {w: [] for w in ids}
            for row in session.execute(
                select(e.worker_id, e.time_s, *cols)
                .where(and_(e.worker_id.in_(ids), e.rtype == rtype, e.time_s >= t0, e.time_s < t1))
                .order_by(e.worker_id, e.time_s, e.seq)
            ):
                found[row[0]].append(row[1:])
            return found

        bout_rows = events(ids, t0, t1, "bout", "duration_s", "mean_flexion_ddeg")
        alert_rows = events(ids, t0, t1, "alert", "time_to_correct_s", "outcome")
        for w in ids:
            lo, hi = bounds[w]
            out[w] = _worker_inputs(minute_rows[w], bout_rows[w], alert_rows[w], lo, hi)
    return out


def _worker_inputs(
    rows: list[Any], bout_rows: list[Any], alert_rows: list[Any], lo: IntArray, hi: IntArray
) -> tuple[MinuteArrays, BoutArrays, AlertArrays]:
    """One worker's exposure inputs from its minute rows (start_s, worn_s, flexion_bins,
    inclination_bins, activity_s, longest_bout_s) and event rows (time_s, field, field), each
    sorted by time; what falls outside the days [lo, hi) is left out."""
    minutes = MinuteArrays.empty()
    if rows:
        start, worn, flex, incl, act, longest = zip(*rows, strict=True)
        start_a = np.array(start, dtype=np.int64)
        day, ok = _assign_days(start_a, lo, hi)

        def packed(col: tuple[bytes, ...], k: int) -> IntArray:
            return np.frombuffer(b"".join(col), dtype=np.uint8).reshape(-1, k).astype(np.int64)[ok]

        minutes = MinuteArrays(
            day_index=day[ok],
            start_s=start_a[ok],
            worn_s=np.array(worn, dtype=np.int64)[ok],
            flexion_s=packed(flex, N_ANGLE_BINS),
            inclination_s=packed(incl, N_ANGLE_BINS),
            activity_s=packed(act, len(protocol.ACTIVITIES)),
            longest_bout_s=np.array(longest, dtype=np.int64)[ok],
        )

    bouts = BoutArrays.empty()
    if bout_rows:
        times, duration, mean_ddeg = zip(*bout_rows, strict=True)
        day, ok = _assign_days(np.array(times, dtype=np.int64), lo, hi)
        bouts = BoutArrays(
            day[ok], np.array(duration, np.int64)[ok], np.array(mean_ddeg, np.float64)[ok] / 10.0
        )
    alerts = AlertArrays.empty()
    if alert_rows:
        times, ttc, outcome = zip(*alert_rows, strict=True)
        day, ok = _assign_days(np.array(times, dtype=np.int64), lo, hi)
        alerts = AlertArrays(
            day[ok],
            np.array([np.nan if v is None else v for v in ttc], np.float64)[ok],
            np.array(outcome, np.int64)[ok],
        )
    return minutes, bouts, alerts


def recompute_daily_exposure(
    session: Session, worker_id: int, days: Iterable[dt.date]
) -> list[DailyExposure]:
    """Compute and save the daily exposure of one worker's `days`; returns the rows.

    Runs in the caller's transaction (flushes, does not commit)."""
    return recompute_workers_days(session, {worker_id: days}).get(worker_id, [])


def recompute_workers_days(
    session: Session, days_of: dict[int, Iterable[dt.date]]
) -> dict[int, list[DailyExposure]]:
    """recompute_daily_exposure for several workers, their inputs loaded together
    (load_workers_days) and their rows read and written in one statement each.

    Runs in the caller's transaction (flushes, does not commit)."""
    wanted = {w: sorted(set(days)) for w, days in days_of.items()}
    wanted = {w: days for w, days in wanted.items() if days}
    if not wanted:
        return {}
    workers = {w.id: w for w in session.scalars(select(Worker).where(Worker.id.in_(list(wanted))))}
    for worker_id in wanted:
        if worker_id not in workers:
            raise LookupError(f"no worker with id {worker_id}")
    inputs = load_workers_days(
        session, {w: (days, ZoneInfo(workers[w].timezone or "UTC")) for w, days in wanted.items()}
    )
    all_days = sorted({d for days in wanted.values() for d in days})
    existing = {
        (row.worker_id, row.day): row
        for row in session.scalars(
            select(DailyExposure).where(
                DailyExposure.worker_id.in_(list(wanted)), DailyExposure.day.in_(all_days)
            )
        )
    }
    now = utc_now()
    out: dict[int, list[DailyExposure]] = {}
    for worker_id, days in wanted.items():
        minutes, bouts, alerts = inputs[worker_id]
        metrics = daily_exposure(minutes, bouts, alerts, len(days))
        rows = []
        for day, values in zip(days, metrics, strict=True):
            row = existing.get((worker_id, day))
            if row is None:
                row = DailyExposure(worker_id=worker_id, day=day)
                session.add(row)
            row.metrics = values
            row.schema_version = SCHEMA_VERSION
            row.dirty = False
            row.computed_at = now
            rows.append(row)
        out[worker_id] = rows
    session.flush()
    return out


def mark_dirty(session: Session, worker_days: Iterable[tuple[int, dt.date]]) -> None:
    """Mark worker-days whose inputs changed (creating their daily_exposure rows if needed).

    On SQLite and PostgreSQL one INSERT .. ON CONFLICT DO UPDATE per worker, elsewhere through the
    ORM; a row of these days the session holds has its `dirty` reloaded on next access."""
    by_worker: dict[int, set[dt.date]] = {}
    for worker_id, day in worker_days:
        by_worker.setdefault(worker_id, set()).add(day)
    if not by_worker:
        return
    session.flush()  # rows the session holds back must exist before the statement below meets them
    connection = session.connection()
    if connection.dialect.name not in _UPSERT_DIALECTS:
        _mark_dirty_orm(session, by_worker)
        return
    for worker_id, days in by_worker.items():
        _MARK_DIRTY.run_many(connection, (sorted(days),), worker=worker_id)
    for row in list(session.identity_map.values()):
        if isinstance(row, DailyExposure) and row.day in by_worker.get(row.worker_id, ()):
            session.expire(row, ["dirty"])


_UPSERT_DIALECTS = ("sqlite", "postgresql")


def _mark_dirty_statement(dialect: Dialect) -> Insert:
    table = DailyExposure.__table__
    assert isinstance(table, Table)
    if dialect.name == "sqlite":
        upsert: Any = sqlite.insert(table)
    elif dialect.name == "postgresql":
        upsert = postgresql.insert(table)
    else:
        raise ValueError(f"no upsert for {dialect.name}")
    return (
        upsert.values(worker_id=bindparam("worker"), day=bindparam("date"), dirty=True, schema_version=0)
        .on_conflict_do_update(index_elements=[table.c.worker_id, table.c.day], set_={"dirty": True})
        .inline()
    )


_MARK_DIRTY = Prepared(_mark_dirty_statement, columns=("date",), constants=("worker",))


def _mark_dirty_orm(session: Session, by_worker: dict[int, set[dt.date]]) -> None:
    for worker_id, days in by_worker.items():
        existing = {
            row.day: row
            for row in session.scalars(
                select(DailyExposure).where(DailyExposure.worker_id == worker_id, DailyExposure.day.in_(days))
            )
        }
        for day in days:
            row = existing.get(day)
            if row is None:
                session.add(DailyExposure(worker_id=worker_id, day=day, dirty=True, schema_version=0))
            else:
                row.dirty = True
    session.flush()


def refresh_stale(session: Session, worker_days: Iterable[tuple[int, dt.date]]) -> int:
    """Recompute those of `worker_days` that are dirty (or of an older SCHEMA_VERSION) and
    return how many.  Call it at the start of a transaction, and commit after.

    An upload may store minutes of a day while its exposure is being recomputed.  So the day's
    rows are locked before its minutes are read (PostgreSQL: ``SELECT .. FOR UPDATE``, which an
    upload's mark_dirty waits for; SQLite: a write first, taking the database's one write lock,
    under which no upload commits).  Either the upload committed before the lock, and its
    minutes are read, or it marks the day dirty again after the recompute committed: a day is
    never left clean with minutes missing.  A race lost even so (a deadlock, a lock not granted
    in time) raises the database's error; the caller may run it again (store.db.lost_race)."""
    by_worker: dict[int, set[dt.date]] = {}
    for worker_id, day in worker_days:
        by_worker.setdefault(worker_id, set()).add(day)
    refreshed = 0
    computing: dict[int, Iterable[dt.date]] = {}
    dialect = session.get_bind().dialect.name
    for worker_id in sorted(by_worker):
        days = sorted(by_worker[worker_id])
        of_these = (DailyExposure.worker_id == worker_id, DailyExposure.day.in_(days))
        stale_now = DailyExposure.dirty.is_(True) | (DailyExposure.schema_version != SCHEMA_VERSION)
        if dialect == "sqlite":
            session.execute(
                update(DailyExposure).where(*of_these).values(dirty=DailyExposure.dirty),
                execution_options={"synchronize_session": False},
            )
        stale = select(DailyExposure.day).where(*of_these, stale_now).order_by(DailyExposure.day)
        if dialect == "postgresql":
            stale = stale.with_for_update()
        to_compute = list(session.scalars(stale))
        if to_compute:
            computing[worker_id] = to_compute
            refreshed += len(to_compute)
    # Every worker's days locked first (above), then all read and computed together: the same
    # guarantee, with a few statements in all instead of several per worker.
    recompute_workers_days(session, computing)
    return refreshed


def recompute_dirty(session: Session) -> int:
    """Recompute every dirty worker-day (and those computed with an older SCHEMA_VERSION);
    returns how many.  Runs in the caller's transaction."""
    rows = session.execute(
        select(DailyExposure.worker_id, DailyExposure.day).where(
            (DailyExposure.dirty.is_(True)) | (DailyExposure.schema_version != SCHEMA_VERSION)
        )
    ).all()
    by_worker: dict[int, list[dt.date]] = {}
    for worker_id, day in rows:
        by_worker.setdefault(worker_id, []).append(day)
    recompute_workers_days(session, dict(by_worker))
    return len(rows)
