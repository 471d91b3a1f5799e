"""``posture demo``: simulated wearers, the real firmware, a real sync, the dashboard.

1. A fresh SQLite database: an organisation, a team with a rotation policy and tasks, an admin,
   an ergonomist, and workers, each with a user account and a device with its own sync key.
2. Each worker's day on an emulated board: the real firmware in the real ``micropython``, its
   IMU fed by a motion scenario (varied: one or two sensors, mountings, seeds).  At the end of
   the day the board goes on the charger, opens its BLE sync window, and the production sync
   agent (bleak, on a bumble virtual link) pulls the log into the companion.
3. The companion serves the dashboard; the logins and ``Dashboard: <url>`` are printed once
   ``GET /health`` answers.  Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import secrets
import shutil
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import Engine, func, select

console = Console()

TEAM = "Parcel hub, day shift"
TASKS = (("Desk & scanning", "low"), ("Sorting", "high"), ("Packing", "medium"))


@dataclass
class DemoWorker:
    name: str
    email: str
    password: str
    device_id: str
    key: bytes
    scenario: str
    seed: int
    two_sensors: bool = False
    mounting_offset_deg: tuple[float, float, float] | None = None
    config: dict[str, Any] | None = None


@dataclass
class Login:
    role: str
    email: str
    password: str


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="simulate workers on the real firmware, sync them, and serve the dashboard",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--workers", type=int, default=3, help="number of simulated workers (1-12)")
    p.add_argument("--hours", type=float, default=4.0, help="simulated hours of each worker's day")
    p.add_argument("--port", type=int, default=8000, help="port of the dashboard (0: any free port)")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on")
    p.add_argument("--db", type=Path, help="SQLite file to create (default: demo.db in the data folder)")
    p.add_argument("--seed", type=int, default=1, help="seed of the scenarios")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="boards simulated at once")
    p.add_argument("--no-serve", action="store_true", help="stop after the data is in (no server)")
    p.set_defaults(func=run)


def plan_workers(n: int, seed: int) -> list[DemoWorker]:
    """Varied wearers: single and two-sensor boards, a rotated mounting, different settings."""
    first = ("Alex", "Sam", "Robin", "Kim", "Jo", "Noor", "Mika", "Luca", "Ari", "Dana", "Yuki", "Tess")
    workers = []
    for i in range(n):
        name = first[i % len(first)] + ("" if i < len(first) else f" {i // len(first) + 1}")
        workers.append(
            DemoWorker(
                name=name,
                email=f"{name.lower().replace(' ', '')}@demo.posture",
                password=secrets.token_urlsafe(9),
                device_id=f"W{i + 1:03d}",
                key=secrets.token_bytes(32),
                scenario="office-day",
                seed=seed * 100 + i,
                two_sensors=(i % 3 == 1),
                mounting_offset_deg=(3.0, -2.0, 5.0) if i % 3 == 2 else None,
                config={"alert_threshold_deg": 25} if i % 4 == 3 else None,
            )
        )
    return workers


def seed_store(engine: Engine, workers: list[DemoWorker], day_start_s: int) -> list[Login]:
    """Organisation, team, tasks, policy, users and devices; returns the logins to print."""
    from companion.auth import create_user
    from companion.store import (
        Device,
        Organisation,
        RotationPolicy,
        Task,
        TaskSegment,
        Team,
        Worker,
        session_scope,
    )

    logins: list[Login] = []
    with session_scope(engine) as session:
        org = Organisation(name="Demo Logistics")
        team = Team(organisation=org, name=TEAM)
        session.add_all([org, team])
        session.flush()
        tasks = [Task(team_id=team.id, name=name, load_class=load) for name, load in TASKS]
        session.add_all(tasks)
        session.add(RotationPolicy(team_id=team.id, max_task_min=120, max_high_load_min=60, min_profile_change_deg=5.0))
        admin_pw = secrets.token_urlsafe(12)
        create_user(session, "admin@demo.posture", admin_pw, "admin")
        logins.append(Login("admin", "admin@demo.posture", admin_pw))
        ergo_pw = secrets.token_urlsafe(12)
        create_user(session, "ergonomist@demo.posture", ergo_pw, "ergonomist", team_ids=(team.id,))
        logins.append(Login("ergonomist", "ergonomist@demo.posture", ergo_pw))
        session.flush()
        for i, w in enumerate(workers):
            worker = Worker(team=team, name=w.name)
            session.add(worker)
            session.flush()
            session.add(Device(device_id=w.device_id, key=w.key, worker=worker))
            create_user(session, w.email, w.password, "worker", worker_id=worker.id)
            logins.append(Login(f"worker {w.name} ({w.device_id})", w.email, w.password))
            # The supervisor's task plan for the day (API-entered segments): some workers rotate
            # every hour or two, one stays on the high-load task too long.
            hour = 3600
            plan = [(0, 2), (1, 1), (2, 1), (0, 4)] if i % 2 == 0 else [(1, 2), (0, 2), (2, 4)]
            t = day_start_s
            for task_index, hours in plan:
                session.add(
                    TaskSegment(
                        worker_id=worker.id,
                        task_id=tasks[task_index].id,
                        start_s=t,
                        end_s=t + hours * hour,
                        source="api",
                    )
                )
                t += hours * hour
    return logins


def simulate(
    workers: list[DemoWorker],
    hours: float,
    engine: Engine,
    start_unix_s: int,
    jobs: int,
    workroot: Path,
) -> dict[str, dict[str, Any]]:
    """Every worker's day on its own emulated board, synced into the store at the end."""
    from companion.sync.emulated import sync_into_store
    from emulator.runner import Board, SensorSpec
    from emulator.scenarios import generate
    from emulator.workday import Wearer, run_day

    results: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        bars: dict[str, TaskID] = {
            w.device_id: progress.add_task(f"{w.device_id} {w.name:8s}", total=hours * 3600 + 300, status="waiting")
            for w in workers
        }

        def one(w: DemoWorker) -> None:
            bar = bars[w.device_id]
            progress.update(bar, status="generating motion")
            recording = generate(
                w.scenario,
                seed=w.seed,
                hours=hours,
                two_sensors=w.two_sensors,
                mounting_offset_deg=w.mounting_offset_deg,
            )
            board = Board(sensors=[SensorSpec(seed=w.seed)], config=dict(w.config or {}))
            wearer = Wearer(w.device_id, w.key, recording, start_unix_s, board=board)
            progress.update(bar, status="wearing")

            def tick(t_s: float) -> None:
                progress.update(bar, completed=t_s, status="syncing" if t_s >= recording.duration_s else "wearing")

            day = run_day(wearer, workroot / w.device_id, sync_into_store(engine, w.device_id), progress=tick)
            progress.update(bar, completed=hours * 3600 + 300, status=f"synced {day.host.records} records")
            with lock:
                results[w.device_id] = {"records": day.host.records, "wall_s": day.wall_s, "alerts": len(day.run.alerts())}

        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            for future in [pool.submit(one, w) for w in workers]:
                future.result()
    return results


def _wait_for_health(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"posture demo: the server did not answer {url}/health within {timeout_s:.0f} s")
        time.sleep(0.1)


def run(args: argparse.Namespace) -> int:
    from companion.settings import Settings
    from companion.store import MinuteSummary, open_store, session_scope

    if not 1 <= args.workers <= 12:
        raise SystemExit("posture demo: --workers must be 1 to 12")
    started = time.perf_counter()
    settings = Settings()
    db = Path(args.db) if args.db else settings.data_dir / "demo.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    # A fresh demo every time; with the files SQLite's WAL mode keeps beside it, which would
    # otherwise be replayed into the new database.
    for stale in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        stale.unlink(missing_ok=True)
    url = f"sqlite:///{db}"
    console.print(f"database: {db} (SQLite, created fresh)")
    engine = open_store(url)
    now = int(time.time())
    day_s = int(args.hours * 3600)
    start_unix_s = now - day_s - 300  # the day ends as the demo starts: "today" on the dashboard
    workers = plan_workers(args.workers, args.seed)
    logins = seed_store(engine, workers, start_unix_s)
    workroot = Path(tempfile.mkdtemp(prefix="posture-demo-"))
    try:
        results = simulate(workers, args.hours, engine, start_unix_s, args.jobs, workroot)
    finally:
        shutil.rmtree(workroot, ignore_errors=True)
    with session_scope(engine) as session:
        minutes = session.scalar(select(func.count()).select_from(MinuteSummary)) or 0
    console.print(
        f"{len(workers)} workers × {args.hours:g} h simulated and synced: "
        f"{sum(r['records'] for r in results.values())} records, {minutes} minute summaries"
    )
    if args.no_serve:
        console.print(f"ready in {time.perf_counter() - started:.1f} s")
        return 0
    return serve(settings.model_copy(update={"database_url": url}), args.host, args.port, logins, started)


def serve(settings: Any, host: str, port: int, logins: list[Login], started: float) -> int:
    import uvicorn

    from companion.api.app import create_app

    app = create_app(settings)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise SystemExit(f"posture demo: the server could not start on {host}:{port} (port in use? try --port 0)")
        time.sleep(0.05)
    actual_port = server.servers[0].sockets[0].getsockname()[1] if port == 0 else port
    url = f"http://{host}:{actual_port}"
    _wait_for_health(url)
    table = Table(title="logins (passwords shown once)")
    for col in ("who", "email", "password"):
        table.add_column(col)
    for login in logins:
        table.add_row(login.role, login.email, login.password)
    console.print(table)
    console.print(f"ready in {time.perf_counter() - started:.1f} s")
    print(f"Dashboard: {url}/", flush=True)
    try:
        while thread.is_alive():
            thread.join(0.5)
    except KeyboardInterrupt:
        server.should_exit = True
        thread.join(5)
    return 0

