"""Scale: the store's queries on a year of minute summaries, at a reduced number of wearers.

docs/scale.md sizes the target (10,000 wearers × 230 workdays × 480 worn minutes = 1.1 billion
minute summaries a year); this bench builds N wearers × D workdays of the same rows in the
store's migrated schema (bench/scale_data.py) and times, each on its own new session:

- team dashboard: companion.api.routes.exposure.team_summary over 28 days, what GET
  /api/teams/{id}/summary and the team page run (workers of the team, their daily_exposure rows);
- worker day: companion.exposure.load_worker_days for one day, the minute summaries and events
  the worker-day page and every exposure recompute read;
- worker-year export: companion.datarights.export_worker, everything stored about one wearer;
- ingest replay check: ingest's query of the stored records a 240-record batch meets.

Baselines from the same run and database: a full scan of minute_summaries (what any query
without a usable index pays), the worker day again after dropping its index (the same query
without it), and the export's rows read by plain SQL (the database's share of the export).

    python -m bench scale
    POSTURE_BENCH_WEARERS=100 POSTURE_BENCH_DAYS=230 python -m bench scale
    POSTURE_BENCH_POSTGRES_URL=postgresql+psycopg://... python -m bench scale   # and PostgreSQL
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import Engine, select, text

from bench import BenchResult
from bench.databases import env_int, percentiles_ms, postgres_schema, postgres_server_url
from bench.scale_data import Wearers, add_wearers, fill, workdays
from companion import datarights, exposure
from companion.api.routes.exposure import team_summary
from companion.store import Record, open_store, session_factory

TARGET_WEARERS = 10_000
TARGET_DAYS = 230
DASHBOARD_DAYS = 28
REPEATS = 20  # of the fast queries; the export and the scans are fewer (EXPORT_REPEATS, SCAN_REPEATS)
EXPORT_REPEATS = 2
SCAN_REPEATS = 3
BATCH_RECORDS = 240


def timed(samples: int, run: Callable[[int], Any]) -> list[float]:
    """Durations (s) of run(0), run(1), ... run(samples - 1)."""
    out = []
    for i in range(samples):
        t0 = time.perf_counter()
        run(i)
        out.append(time.perf_counter() - t0)
    return out


SIZED_TABLES = ("minute_summaries", "records", "events")


def table_sizes(engine: Engine) -> dict[str, float]:
    """Bytes per row of SIZED_TABLES, table and its indexes together (PostgreSQL); on SQLite the
    whole file per row of the three (dbstat, which would split it, is not always compiled in)."""
    with engine.connect() as conn:
        n = [conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in SIZED_TABLES]
        if engine.dialect.name == "postgresql":
            size = [
                conn.execute(text(f"SELECT pg_total_relation_size('{t}')")).scalar_one() for t in SIZED_TABLES
            ]
            return {t: b / max(1, k) for t, b, k in zip(SIZED_TABLES, size, n, strict=True)}
        pages = (
            conn.execute(text("PRAGMA page_count")).scalar_one()
            * conn.execute(text("PRAGMA page_size")).scalar_one()
        )
        return {"sqlite_file": pages / max(1, sum(n))}


def measure(engine: Engine, wearers: Wearers, n_days: int, progress: Any, task: Any) -> dict[str, Any]:
    factory = session_factory(engine)
    days = workdays(n_days)
    lo, hi = days[max(0, len(days) - DASHBOARD_DAYS)], days[-1]
    rng = np.random.default_rng(3)
    utc = ZoneInfo("UTC")
    seqs_per_device = {}
    with factory() as session:
        for pk in wearers.device_pks:
            seqs_per_device[pk] = session.scalar(
                select(Record.seq).where(Record.device_pk == pk).order_by(Record.seq.desc()).limit(1)
            )
    out: dict[str, Any] = {}

    def step() -> None:
        if progress is not None:
            progress.update(task, advance=1)

    def dashboard(i: int) -> None:
        with factory() as session:
            team_summary(session, wearers.team_ids[i % len(wearers.team_ids)], lo, hi)

    def worker_day(i: int) -> None:
        w = int(rng.integers(len(wearers.worker_ids)))
        day = days[int(rng.integers(len(days)))]
        with factory() as session:
            minutes, _, _ = exposure.load_worker_days(session, wearers.worker_ids[w], [day], utc)
            assert len(minutes.start_s) > 0

    def export(i: int) -> None:
        with factory() as session:
            datarights.export_worker(session, wearers.worker_ids[i % len(wearers.worker_ids)])

    def export_floor(i: int) -> None:
        w = i % len(wearers.worker_ids)
        with engine.connect() as conn:
            params = {"w": wearers.worker_ids[w], "d": wearers.device_pks[w]}
            conn.execute(
                text("SELECT * FROM minute_summaries WHERE worker_id = :w ORDER BY start_s, seq"), params
            ).all()
            conn.execute(text("SELECT * FROM events WHERE worker_id = :w ORDER BY time_s, seq"), params).all()
            conn.execute(text("SELECT * FROM records WHERE device_pk = :d ORDER BY seq"), params).all()

    def replay_check(i: int) -> None:
        pk = wearers.device_pks[i % len(wearers.device_pks)]
        top = seqs_per_device[pk]
        with factory() as session:
            session.execute(
                select(Record.seq, Record.rtype, Record.payload).where(
                    Record.device_pk == pk,
                    Record.seq.between(top - BATCH_RECORDS + 1, top) | (Record.seq > top - BATCH_RECORDS),
                )
            ).all()

    def full_scan(i: int) -> None:
        with engine.connect() as conn:
            conn.execute(text("SELECT count(*) FROM minute_summaries WHERE worn_s < 0")).scalar()

    out["sizes"] = table_sizes(engine)
    for name, samples, run in (
        ("team_dashboard", REPEATS, dashboard),
        ("worker_day", REPEATS, worker_day),
        ("replay_check", REPEATS, replay_check),
        ("worker_year_export", EXPORT_REPEATS, export),
        ("worker_year_export_sql", EXPORT_REPEATS, export_floor),
        ("full_scan", SCAN_REPEATS, full_scan),
    ):
        run(0)  # warm the caches: every figure is a warm one
        out[name] = timed(samples, run)
        step()
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_minute_summaries_worker_start"))
    out["worker_day_without_index"] = timed(SCAN_REPEATS, worker_day)
    step()
    return out


QUERIES = (
    ("team_dashboard", "team dashboard", "full_scan"),
    ("worker_day", "worker day", "worker_day_without_index"),
    ("replay_check", "ingest replay check", "full_scan"),
    ("worker_year_export", "worker-year export", "worker_year_export_sql"),
)
BASELINE_LABELS = {
    "full_scan": "full scan",
    "worker_day_without_index": "no index",
    "worker_year_export_sql": "plain SQL",
}


def run_backend(
    url: str, n: int, n_days: int, progress: Any
) -> tuple[dict[str, int], dict[str, list[float]], float]:
    task = progress.add_task(f"{url.split(':', 1)[0]}: insert", total=n) if progress is not None else None
    engine = open_store(url)
    try:
        wearers = add_wearers(engine, n)
        t0 = time.perf_counter()
        counts = fill(engine, wearers, n_days, lambda: progress.update(task, advance=1) if progress else None)
        fill_s = time.perf_counter() - t0
        if engine.dialect.name == "postgresql":
            with engine.connect() as conn:
                conn.execute(text("ANALYZE"))
        if progress is not None:
            progress.update(
                task, description=f"{engine.dialect.name}: queries", completed=0, total=len(QUERIES) + 3
            )
        samples = measure(engine, wearers, n_days, progress, task)
    finally:
        engine.dispose()
    return counts, samples, fill_s


def run(progress: Any = None) -> BenchResult:
    n = env_int("POSTURE_BENCH_WEARERS", 8)
    n_days = env_int("POSTURE_BENCH_DAYS", TARGET_DAYS)
    figures: dict[str, Any] = {"wearers": n, "workdays": n_days, "target_wearers": TARGET_WEARERS}
    rows: list[list[Any]] = []
    backends: list[tuple[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="posture-bench-scale-") as tmp:
        backends.append(("sqlite", lambda: nullcontext(f"sqlite:///{Path(tmp) / 'scale.db'}")))
        server = postgres_server_url()
        if server:
            backends.append(("postgres", lambda: postgres_schema(server, "bench_scale")))
        for backend, make_url in backends:
            with make_url() as url:
                counts, samples, fill_s = run_backend(url, n, n_days, progress)
            figures[f"{backend}_minute_summaries"] = counts["minute_summaries"]
            figures[f"{backend}_rows"] = sum(counts.values())
            figures[f"{backend}_insert_rows_per_s"] = round(sum(counts.values()) / fill_s)
            for table, per_row in samples.pop("sizes").items():
                figures[f"{backend}_{table}_bytes_per_row"] = round(per_row)
            for key, label, baseline in QUERIES:
                p50, p95 = percentiles_ms(samples[key], 50, 95)
                base50 = percentiles_ms(samples[baseline], 50)[0]
                figures[f"{backend}_{key}_p50_ms"] = p50
                figures[f"{backend}_{key}_p95_ms"] = p95
                figures[f"{backend}_{baseline}_p50_ms"] = base50
                figures[f"{backend}_{key}_ratio_vs_baseline"] = round(p50 / base50, 4)
                rows.append(
                    [
                        backend,
                        label,
                        len(samples[key]),
                        p50,
                        p95,
                        BASELINE_LABELS[baseline],
                        base50,
                        p50 / base50,
                    ]
                )
    return BenchResult(
        title=f"Scale: {n} wearers × {n_days} workdays × 480 min ({n / TARGET_WEARERS:.2%} of {TARGET_WEARERS:,} wearer-years)",
        columns=["db", "query", "runs", "p50 ms", "p95 ms", "baseline", "base p50 ms", "ratio"],
        rows=rows,
        figures=figures,
        notes=[
            f"Queries: team dashboard = team_summary over {DASHBOARD_DAYS} days of one team "
            "(GET /api/teams/{id}/summary, the team page); worker day = load_worker_days (minutes + events "
            f"of one worker-day); ingest replay check = the stored records a {BATCH_RECORDS}-record batch "
            "meets; worker-year export = datarights.export_worker. Baselines: full scan = a scan of all "
            "minute_summaries; no index = the worker day after DROP INDEX ix_minute_summaries_worker_start; "
            "plain SQL = the export's minute, event and record rows fetched by SQL alone.",
            "Warm caches, one new session per run. Ratio = p50 / baseline p50: below 1 means the query "
            "costs less than the baseline; the full scan grows with the whole table, the indexed queries "
            "with one team / one worker only.",
            "Rows: minute summaries, events (bouts, alerts), one raw record per row, daily exposure; "
            "inserted in bulk (executemany / COPY), one transaction per wearer.",
            "Sizes: POSTURE_BENCH_WEARERS (default 8), POSTURE_BENCH_DAYS (default 230); PostgreSQL too "
            "when POSTURE_BENCH_POSTGRES_URL is set (a schema of its own, dropped after).",
        ],
    )
