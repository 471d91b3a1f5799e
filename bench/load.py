"""Load: many sync agents uploading work-days while ergonomists use the dashboard, against
``posture serve --workers N`` on loopback, then a count of every record in the database.

Phases, on a fresh database (SQLite file; PostgreSQL too when POSTURE_BENCH_POSTGRES_URL is set):

1. every agent uploads the morning of its wearer's work-day (bench/ingest.py's device day:
   minute summaries, bouts, alerts), all agents at once, one batch after the other each;
2. baseline: the ergonomists alone query the dashboard for QUIET_S seconds;
3. under load: every agent uploads the afternoon, sends one morning batch again unchanged, and
   one window overlapping the two halves, while the ergonomists keep querying.

A 503 (the companion's "busy, send again") is retried after its Retry-After, as the sync agent
does, and counted; any other failure is an error.  Afterwards, in the database: every record
generated is stored (lost = generated − stored) exactly once (duplicated = rows − distinct
(device, seq)), and the upload answers' `stored` counts add up to the records generated.

    python -m bench load
    POSTURE_BENCH_AGENTS=400 POSTURE_BENCH_SERVE_WORKERS=2 python -m bench load
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import sqlalchemy as sa

from bench import BenchResult
from bench.databases import env_int, percentiles_ms, postgres_schema, postgres_server_url
from bench.ingest import device_day_records
from bench.load_server import World, make_world, posture_serve
from bench.scale_data import KEY
from companion.ingest import batch_mac
from companion.store import Device, MinuteSummary, Record, make_engine

WORKDAY = dt.date(2026, 1, 5)
DAY_START_S = 7 * 3600
BATCH_RECORDS = 120  # two hours of records: a sync agent sends a day in a few batches
QUIET_S = 6.0
THINK_S = 0.05  # an ergonomist's pause between two requests
RETRIES = 60
REQUEST_TIMEOUT_S = 60.0
DEADLINE_S = 150.0  # the whole run; whatever is still running then is an error


@dataclass
class Tally:
    """Latencies (s) and outcomes of one kind of request."""

    latency_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    retried_503: int = 0
    stored: int = 0
    by_kind_s: dict[str, list[float]] = field(default_factory=dict)  # dashboard: latencies per page kind


def day_start_s(day: dt.date) -> int:
    return int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp()) + DAY_START_S


@dataclass
class AgentPlan:
    device_id: str
    token: str
    morning: list[bytes]  # batches of framed records: the first half of the work-day
    afternoon: list[bytes]  # the second half
    again: bytes  # a morning batch sent a second time, unchanged
    overlap: bytes  # the last records of the morning and the first of the afternoon
    records: int  # distinct records in all of them


def plans(world: World) -> list[AgentPlan]:
    rng = np.random.default_rng(5)
    out = []
    for device_id, token in zip(world.device_ids, world.agent_tokens, strict=True):
        day = device_day_records(rng, 1, day_start_s(WORKDAY))
        half = len(day) // 2

        def batches(records: list[bytes]) -> list[bytes]:
            return [b"".join(records[i : i + BATCH_RECORDS]) for i in range(0, len(records), BATCH_RECORDS)]

        morning = batches(day[:half])
        overlap = b"".join(day[half - BATCH_RECORDS // 2 : half + BATCH_RECORDS // 2])
        out.append(AgentPlan(device_id, token, morning, batches(day[half:]), morning[-1], overlap, len(day)))
    return out


async def upload(client: httpx.AsyncClient, plan: AgentPlan, frames: bytes, tally: Tally) -> None:
    body = {
        "device_id": plan.device_id,
        "frames_b64": base64.b64encode(frames).decode(),
        "batch_mac_b64": base64.b64encode(batch_mac(KEY, plan.device_id, frames)).decode(),
    }
    headers = {"Authorization": f"Bearer {plan.token}"}
    t0 = time.perf_counter()
    for _ in range(RETRIES):
        try:
            answer = await client.post("/api/ingest", json=body, headers=headers)
        except httpx.HTTPError as e:
            tally.errors.append(f"ingest {plan.device_id}: {type(e).__name__} {e}")
            return
        if answer.status_code == 503:
            tally.retried_503 += 1
            await asyncio.sleep(float(answer.headers.get("Retry-After", "1")))
            continue
        if answer.status_code != 200:
            tally.errors.append(f"ingest {plan.device_id}: {answer.status_code} {answer.text[:200]}")
            return
        tally.latency_s.append(time.perf_counter() - t0)  # with its retries: what the agent waits
        tally.stored += answer.json()["stored"]
        return
    tally.errors.append(f"ingest {plan.device_id}: still 503 after {RETRIES} tries")


async def agent(client: httpx.AsyncClient, plan: AgentPlan, batches: list[bytes], tally: Tally) -> None:
    for frames in batches:  # one at a time, as a sync agent does
        await upload(client, plan, frames, tally)


def dashboard_paths(world: World) -> list[str]:
    """What an ergonomist opens: team summaries (API), team pages, worker-day timelines."""
    lo, hi = WORKDAY - dt.timedelta(days=27), WORKDAY
    paths = []
    for team_id in world.team_ids:
        paths.append(f"/api/teams/{team_id}/summary?from={lo}&to={hi}")
        paths.append(f"/teams/{team_id}?date_from={lo}&date_to={hi}")
    for worker_id in world.worker_ids[:: max(1, len(world.worker_ids) // 16)]:
        paths.append(f"/api/workers/{worker_id}/days/{WORKDAY}/timeline")
    return paths


def page_kind(path: str) -> str:
    if path.startswith("/teams/"):
        return "team_page"
    return "team_summary_api" if "/summary" in path else "timeline_api"


async def ergonomist(
    client: httpx.AsyncClient, token: str, paths: list[str], stop: asyncio.Event, tally: Tally, seed: int
) -> None:
    chooser = random.Random(seed)
    headers = {"Authorization": f"Bearer {token}"}
    while not stop.is_set():
        path = chooser.choice(paths)
        t0 = time.perf_counter()
        try:
            answer = await client.get(path, headers=headers)
        except httpx.HTTPError as e:
            tally.errors.append(f"GET {path}: {type(e).__name__} {e}")
            continue
        if answer.status_code == 200:
            tally.latency_s.append(time.perf_counter() - t0)
            tally.by_kind_s.setdefault(page_kind(path), []).append(tally.latency_s[-1])
        else:
            tally.errors.append(f"GET {path}: {answer.status_code} {answer.text[:200]}")
        await asyncio.sleep(THINK_S)


PHASES = ("ingest_alone", "dashboard_alone", "ingest_under_load", "dashboard_under_load")


async def workload(
    base: str,
    world: World,
    agent_plans: list[AgentPlan],
    ergonomists: int,
    tallies: dict[str, Tally],
    seconds: dict[str, float],
) -> None:
    """The three phases; results go into `tallies` and `seconds`, so that what was measured
    before a deadline cut the run short is still there."""
    # Agents open a connection per upload, as the sync agent's urllib does: a pooled keep-alive
    # connection can be closed by the server (uvicorn: after 5 s idle) just as a POST goes out on
    # it, a ReadError no real agent meets.  Ergonomists (browsers) keep theirs, for 2 s.
    agent_limits = httpx.Limits(max_connections=len(agent_plans) + 8, max_keepalive_connections=0)
    paths = dashboard_paths(world)
    async with (
        httpx.AsyncClient(base_url=base, limits=agent_limits, timeout=REQUEST_TIMEOUT_S) as uploads,
        httpx.AsyncClient(
            base_url=base, limits=httpx.Limits(keepalive_expiry=2.0), timeout=REQUEST_TIMEOUT_S
        ) as client,
    ):
        t0 = time.perf_counter()
        await asyncio.gather(*(agent(uploads, p, p.morning, tallies["ingest_alone"]) for p in agent_plans))
        seconds["ingest_alone"] = time.perf_counter() - t0

        stop = asyncio.Event()
        quiet = [
            asyncio.create_task(
                ergonomist(client, world.ergonomist_token, paths, stop, tallies["dashboard_alone"], i)
            )
            for i in range(ergonomists)
        ]
        await asyncio.sleep(QUIET_S)
        stop.set()
        await asyncio.gather(*quiet)

        stop = asyncio.Event()
        busy = [
            asyncio.create_task(
                ergonomist(
                    client, world.ergonomist_token, paths, stop, tallies["dashboard_under_load"], 100 + i
                )
            )
            for i in range(ergonomists)
        ]
        t0 = time.perf_counter()
        load = tallies["ingest_under_load"]
        try:
            await asyncio.gather(
                *(agent(uploads, p, [*p.afternoon, p.again, p.overlap], load) for p in agent_plans)
            )
            seconds["ingest_under_load"] = time.perf_counter() - t0
        finally:  # also when the deadline cancels the run: no ergonomist outlives the client
            stop.set()
            for task in busy:
                task.cancel()
            await asyncio.gather(*busy, return_exceptions=True)


def verify(url: str, agent_plans: list[AgentPlan]) -> dict[str, int]:
    """Lost and duplicated records, from the database itself."""
    engine = make_engine(url)
    expected = {p.device_id: p.records for p in agent_plans}
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                Device.device_id,
                sa.func.count(),
                sa.func.count(sa.distinct(Record.seq)),
                sa.func.max(Record.seq),
            )
            .join(Record, Record.device_pk == Device.id)
            .group_by(Device.device_id)
        ).all()
        minute_rows = (
            conn.execute(
                sa.select(
                    sa.func.count(),
                    sa.func.count(sa.distinct(sa.tuple_(MinuteSummary.device_pk, MinuteSummary.seq))),
                )
            ).one()
            if engine.dialect.name == "postgresql"
            else conn.execute(
                sa.text(
                    "SELECT count(*), (SELECT count(*) FROM (SELECT DISTINCT device_pk, seq FROM minute_summaries)) FROM minute_summaries"
                )
            ).one()
        )
        acked = dict(conn.execute(sa.select(Device.device_id, Device.contiguous_seq)).all())
    engine.dispose()
    stored = {device_id: (n, distinct, top) for device_id, n, distinct, top in rows}
    lost = sum(expected[d] - stored.get(d, (0, 0, 0))[1] for d in expected)
    duplicated = sum(n - distinct for n, distinct, _ in stored.values()) + (minute_rows[0] - minute_rows[1])
    not_acked = sum(1 for d in expected if acked.get(d) != expected[d])
    return {
        "records_expected": sum(expected.values()),
        "records_lost": lost,
        "records_duplicated": duplicated,
        "devices_not_fully_acked": not_acked,
    }


def run_backend(url: str, agents: int, ergonomists: int, serve_workers: int, folder: Path) -> dict[str, Any]:
    world = make_world(url, agents)
    agent_plans = plans(world)
    log_path = folder / "serve.log"
    with posture_serve(url, serve_workers, log_path) as base:
        tallies = {k: Tally() for k in PHASES}
        seconds: dict[str, float] = {}
        result: dict[str, Any] = {"tallies": tallies, "seconds": seconds}
        try:
            asyncio.run(
                asyncio.wait_for(
                    workload(base, world, agent_plans, ergonomists, tallies, seconds), DEADLINE_S
                )
            )
        except TimeoutError:
            tallies["ingest_under_load"].errors.append(f"the run passed its {DEADLINE_S:.0f} s deadline")
            seconds.setdefault("ingest_alone", DEADLINE_S)
            seconds.setdefault("ingest_under_load", DEADLINE_S)
    log = log_path.read_text(errors="replace")
    result["server_tracebacks"] = log.count("Traceback")
    result["server_500s"] = log.count('" 500')
    result["check"] = verify(url, agent_plans)
    result["answers_stored"] = (
        result["tallies"]["ingest_alone"].stored + result["tallies"]["ingest_under_load"].stored
    )
    with contextlib.suppress(OSError):
        (Path(tempfile.gettempdir()) / "posture-bench-load-serve.log").write_text(log)
    return result


LABELS = {
    "ingest_alone": "ingest alone",
    "dashboard_alone": "dashboard alone",
    "ingest_under_load": "ingest+dash",
    "dashboard_under_load": "dashboard+ingest",
}


def run(progress: Any = None) -> BenchResult:
    agents = env_int("POSTURE_BENCH_AGENTS", 200)
    ergonomists = env_int("POSTURE_BENCH_ERGONOMISTS", 4)
    serve_workers = env_int("POSTURE_BENCH_SERVE_WORKERS", 2)
    figures: dict[str, Any] = {"agents": agents, "ergonomists": ergonomists, "serve_workers": serve_workers}
    rows: list[list[Any]] = []
    server = postgres_server_url()
    backends = ["sqlite", *(["postgres"] if server else [])]
    task = progress.add_task("load", total=len(backends)) if progress is not None else None
    for backend in backends:
        with tempfile.TemporaryDirectory(prefix="posture-bench-load-") as tmp:
            place = (
                contextlib.nullcontext(f"sqlite:///{Path(tmp) / 'load.db'}")
                if backend == "sqlite"
                else postgres_schema(server or "", "bench_load")
            )
            with place as url:
                result = run_backend(url, agents, ergonomists, serve_workers, Path(tmp))
        if progress is not None:
            progress.update(task, advance=1)
        errors = 0
        for key, tally in result["tallies"].items():
            p50, p99 = percentiles_ms(tally.latency_s, 50, 99)
            span = result["seconds"].get(key, QUIET_S)
            rate = len(tally.latency_s) / span if span else 0.0
            errors += len(tally.errors)
            rows.append(
                [
                    backend,
                    LABELS[key],
                    len(tally.latency_s),
                    p50,
                    p99,
                    rate,
                    tally.retried_503,
                    len(tally.errors),
                ]
            )
            figures[f"{backend}_{key}_p50_ms"] = p50
            figures[f"{backend}_{key}_p99_ms"] = p99
            figures[f"{backend}_{key}_requests_per_s"] = round(rate, 1)
            figures[f"{backend}_{key}_errors"] = len(tally.errors)
            for kind, samples in sorted(tally.by_kind_s.items()):
                figures[f"{backend}_{key}_{kind}_p99_ms"] = percentiles_ms(samples, 99)[0]
            if key.startswith("ingest"):
                figures[f"{backend}_{key}_retried_503"] = tally.retried_503
                figures[f"{backend}_{key}_records_per_s"] = round(tally.stored / span) if span else 0
            for message in tally.errors[:3]:
                print(f"[{backend}] {message}")
        figures.update({f"{backend}_{k}": v for k, v in result["check"].items()})
        figures[f"{backend}_answers_stored"] = result["answers_stored"]
        figures[f"{backend}_errors"] = errors + result["server_tracebacks"]
        figures[f"{backend}_server_tracebacks"] = result["server_tracebacks"]
        quiet = figures[f"{backend}_dashboard_alone_p99_ms"]
        figures[f"{backend}_dashboard_p99_ratio_vs_quiet"] = (
            round(figures[f"{backend}_dashboard_under_load_p99_ms"] / quiet, 3) if quiet else None
        )
    return BenchResult(
        title=f"Load: {agents} sync agents, {ergonomists} ergonomists, posture serve --workers {serve_workers}, loopback",
        columns=["db", "requests", "n", "p50 ms", "p99 ms", "per s", "503s", "errors"],
        rows=rows,
        figures=figures,
        notes=[
            "Each agent uploads one work-day of its wearer (minute summaries, bouts, alerts): the morning "
            f"with no dashboard traffic, then the afternoon plus one morning batch again unchanged and one "
            f"window overlapping the two halves, in {BATCH_RECORDS}-record batches one at a time. Ingest "
            "latency includes any 503 retries (Retry-After honoured); per s = batches answered per second "
            "of the phase.",
            f"Dashboard: team summary API, team page, worker-day timeline, {THINK_S * 1000:.0f} ms think time; "
            f"baseline = the same requests for {QUIET_S:.0f} s with no uploads.",
            "Afterwards in the database: records_lost = generated - distinct stored, records_duplicated = "
            "rows - distinct (device, seq) in records and minute_summaries.",
            "Sizes: POSTURE_BENCH_AGENTS, POSTURE_BENCH_ERGONOMISTS, POSTURE_BENCH_SERVE_WORKERS; PostgreSQL "
            "too when POSTURE_BENCH_POSTGRES_URL is set.",
        ],
    )
