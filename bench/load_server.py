"""The load bench's companion: a fresh database with wearers, agent tokens and an ergonomist, and
``posture serve --workers N`` on it on loopback, in a subprocess (the real command, as deployed)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.scale_data import teams_of_wearers
from companion import auth
from companion.store import open_store, session_scope

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 90


@dataclass
class World:
    device_ids: list[str]
    worker_ids: list[int]
    team_ids: list[int]
    agent_tokens: list[str]  # one per agent: agents are separate PCs
    ergonomist_token: str


def make_world(url: str, agents: int) -> World:
    """Migrate the database at `url` and add `agents` wearers (a device and worker each, in teams
    of TEAM_SIZE), an agent token per wearer and an ergonomist looking after every team."""
    engine = open_store(url)
    with session_scope(engine) as session:
        teams, devices = teams_of_wearers(session, agents, "load", "L")
        tokens = [auth.issue_agent_token(session, f"agent {i}") for i in range(agents)]
        user = auth.create_user(
            session,
            "ergo@load.example",
            "a long bench password",
            "ergonomist",
            team_ids=[t.id for t in teams],
        )
        world = World(
            [d.device_id for d in devices],
            [d.worker_id or 0 for d in devices],
            [t.id for t in teams],
            tokens,
            auth.issue_token(session, user),
        )
    engine.dispose()
    return world


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def posture_serve(url: str, workers: int, log_path: Path) -> Iterator[str]:
    """`posture serve --workers N --db url` on 127.0.0.1: its base URL once /health answers.  Its
    output goes to `log_path` (a pipe would fill with access-log lines and stall the server)."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "host"), str(REPO / "shared")])}
    command = [sys.executable, "-m", "companion.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [*command, "--db", url, "--workers", str(workers)], stdout=log, stderr=subprocess.STDOUT, env=env
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                httpx.get(f"{base}/health", timeout=2)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"posture serve did not come up:\n{log_path.read_text()}") from None
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
