"""Daily load exposure: all metrics (companion.exposure.daily_exposure) for 1,000 worker-days of
8 worn hours each, target < 2 s; next to the bare per-day summing of the same histograms (the
least any implementation must do) from the same run; and the store path (load a worker's days
from SQLite + compute + save) for a smaller set.

    python -m bench exposure
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

import protocol
from bench import BenchResult
from companion import exposure
from companion.exposure import AlertArrays, BoutArrays, MinuteArrays
from companion.store import (
    Device,
    MinuteSummary,
    Organisation,
    Team,
    Worker,
    open_store,
    session_factory,
    session_scope,
)

WORKER_DAYS = 1000
MINUTES_PER_DAY = 8 * 60
BOUTS_PER_DAY = 60
ALERTS_PER_DAY = 6
STORE_WORKERS = 10
STORE_DAYS = 10
DAY0 = dt.date(2026, 1, 5)
DAY0_S = 1_767_571_200  # 2026-01-05T00:00:00Z
REPEATS = 3


def random_histograms(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 20) minute histograms: 60 s spread over a few neighbouring bins."""
    centre = rng.integers(1, 17, size=n)
    offsets = rng.integers(0, 3, size=(n, 60))
    bins = np.clip(centre[:, None] + offsets, 0, protocol.ANGLE_BINS - 1)
    hist = np.zeros((n, protocol.ANGLE_BINS), np.int64)
    np.add.at(hist, (np.repeat(np.arange(n), 60), bins.ravel()), 1)
    return hist


def synthetic_days(n_days: int, seed: int = 1) -> tuple[MinuteArrays, BoutArrays, AlertArrays]:
    rng = np.random.default_rng(seed)
    n = n_days * MINUTES_PER_DAY
    day = np.repeat(np.arange(n_days, dtype=np.int64), MINUTES_PER_DAY)
    start = DAY0_S + 8 * 3600 + 60 * np.tile(np.arange(MINUTES_PER_DAY, dtype=np.int64), n_days)
    activity = np.zeros((n, 5), np.int64)
    activity[:, protocol.ACTIVITY_STATIC] = 50
    activity[:, protocol.ACTIVITY_MOVING] = 10
    minutes = MinuteArrays(
        day_index=day,
        start_s=start,
        worn_s=np.full(n, 60, np.int64),
        flexion_s=random_histograms(rng, n),
        inclination_s=random_histograms(rng, n),
        activity_s=activity,
        longest_bout_s=rng.integers(0, 60, size=n),
    )
    nb = n_days * BOUTS_PER_DAY
    bouts = BoutArrays(
        day_index=np.repeat(np.arange(n_days, dtype=np.int64), BOUTS_PER_DAY),
        duration_s=rng.integers(5, 400, size=nb),
        mean_flexion_deg=rng.uniform(20.0, 70.0, size=nb),
    )
    na = n_days * ALERTS_PER_DAY
    ttc = rng.uniform(1.0, 30.0, size=na)
    ttc[rng.random(na) < 0.2] = np.nan
    alerts = AlertArrays(
        day_index=np.repeat(np.arange(n_days, dtype=np.int64), ALERTS_PER_DAY),
        time_to_correct_s=ttc,
        outcome=np.where(np.isnan(ttc), protocol.OUTCOME_TIMED_OUT, protocol.OUTCOME_CORRECTED),
    )
    return minutes, bouts, alerts


def best_of(fn: Any) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def store_path_seconds(folder: str) -> float:
    """Recompute STORE_WORKERS × STORE_DAYS worker-days from a SQLite store (load + compute + save)."""
    minutes, _, _ = synthetic_days(STORE_WORKERS * STORE_DAYS, seed=2)
    engine = open_store(f"sqlite:///{Path(folder) / 'exposure.db'}")
    with session_scope(engine) as session:
        team = Team(organisation=Organisation(name="bench"), name="bench")
        workers = [Worker(team=team, name=f"w{i}") for i in range(STORE_WORKERS)]
        session.add_all(workers)
        session.flush()
        worker_ids = [w.id for w in workers]
        device = Device(device_id="BENCH", key=None)
        session.add(device)
        session.flush()
        rows = []
        for i in range(len(minutes.day_index)):
            d = int(minutes.day_index[i])
            rows.append(
                {
                    "device_pk": device.id,
                    "worker_id": worker_ids[d // STORE_DAYS],
                    "seq": i,
                    "start_s": int(minutes.start_s[i]) + 86_400 * (d % STORE_DAYS),
                    "worn_s": 60,
                    "flexion_bins": minutes.flexion_s[i].astype(np.uint8).tobytes(),
                    "inclination_bins": minutes.inclination_s[i].astype(np.uint8).tobytes(),
                    "lateral_bins": bytes([0, 0, 60, 0, 0]),
                    "activity_s": minutes.activity_s[i].astype(np.uint8).tobytes(),
                    "alert_count": 0,
                    "longest_bout_s": int(minutes.longest_bout_s[i]),
                }
            )
        session.connection().execute(sa.insert(MinuteSummary), rows)
    days = [DAY0 + dt.timedelta(days=k) for k in range(STORE_DAYS)]
    factory = session_factory(engine)

    def recompute() -> None:
        with factory() as session, session.begin():
            for worker_id in worker_ids:
                exposure.recompute_daily_exposure(session, worker_id, days)

    seconds = best_of(recompute)
    engine.dispose()
    return seconds


def run(progress: Any = None) -> BenchResult:
    task = progress.add_task("exposure", total=3) if progress is not None else None

    def step() -> None:
        if progress is not None:
            progress.update(task, advance=1)

    minutes, bouts, alerts = synthetic_days(WORKER_DAYS)
    step()
    baseline_s = best_of(lambda: exposure.per_day_sum(minutes.day_index, minutes.inclination_s, WORKER_DAYS))
    metrics_s = best_of(lambda: exposure.daily_exposure(minutes, bouts, alerts, WORKER_DAYS))
    step()
    with tempfile.TemporaryDirectory(prefix="posture-bench-exposure-") as tmp:
        store_s = store_path_seconds(tmp)
    step()
    store_days = STORE_WORKERS * STORE_DAYS
    figures = {
        "worker_days": WORKER_DAYS,
        "minutes": len(minutes.day_index),
        "daily_exposure_s": round(metrics_s, 4),
        "daily_exposure_ms_per_worker_day": round(1000 * metrics_s / WORKER_DAYS, 4),
        "histogram_sum_baseline_s": round(baseline_s, 4),
        "ratio_vs_histogram_sum": round(metrics_s / baseline_s, 2),
        "store_recompute_ms_per_worker_day": round(1000 * store_s / store_days, 3),
        "target_s": 2.0,
        "meets_target": metrics_s < 2.0,
    }
    rows: list[list[Any]] = [
        ["per-day histogram sum (baseline)", WORKER_DAYS, baseline_s, 1000 * baseline_s / WORKER_DAYS],
        ["daily_exposure: all metrics", WORKER_DAYS, metrics_s, 1000 * metrics_s / WORKER_DAYS],
        ["store: load + compute + save (SQLite)", store_days, store_s, 1000 * store_s / store_days],
    ]
    return BenchResult(
        title=f"Daily exposure: {WORKER_DAYS} worker-days × {MINUTES_PER_DAY} minutes",
        columns=["path", "worker-days", "seconds", "ms per worker-day"],
        rows=rows,
        figures=figures,
        notes=[
            f"{BOUTS_PER_DAY} bouts and {ALERTS_PER_DAY} alerts per day; best of {REPEATS} runs. "
            "Target: all metrics of 1,000 worker-days in < 2 s.",
            "The baseline sums one histogram per day (np.bincount), the least any implementation does.",
        ],
    )
