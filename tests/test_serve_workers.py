"""`posture serve --workers 2`: two uvicorn worker processes on one database, started on an empty
one (the parent migrates it before forking), take many concurrent uploads of the same and of
overlapping batches.  Afterwards every (device, seq) is stored exactly once, every answer was a
200 with counts that add up (or a 503 with Retry-After, retried), never a 500.  And the sync agent
sends a batch again after a 503's Retry-After.

Runs on SQLite (WAL, busy timeout) and on PostgreSQL when POSTURE_TEST_POSTGRES_URL is set."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import own_loop
import pytest
import sqlalchemy as sa
from test_ingest import JAN1, KEY, minutes_batch

from companion import auth
from companion.api.routes.exposure import worker_days
from companion.ingest import batch_mac
from companion.store import (
    DailyExposure,
    Device,
    MinuteSummary,
    Organisation,
    Record,
    Team,
    Worker,
    make_engine,
    session_factory,
    session_scope,
)
from companion.sync.agent import UploadResult, http_uploader

REPO = Path(__file__).resolve().parent.parent
DEVICES = ("C001", "C002", "C003")
MINUTES = 240  # per device: seqs 1..240, four hours from 08:00 UTC on JAN1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def posture_serve(db_url: str, workers: int) -> Iterator[str]:
    """`posture serve --workers N` on `db_url` in a subprocess: its base URL once /health answers."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "host"), str(REPO / "shared")])}
    command = [sys.executable, "-m", "companion.cli", "serve", "--port", str(port), "--db", db_url]
    proc = subprocess.Popen(
        [*command, "--workers", str(workers)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/health", timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    pytest.fail(f"posture serve did not come up:\n{proc.communicate()[0]}")
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0]
        assert "Traceback" not in output, output


def add_wearers(db_url: str) -> str:
    """A worker wearing each of DEVICES, and a sync agent's token."""
    engine = make_engine(db_url)
    with session_scope(engine) as session:
        team = Team(organisation=Organisation(name="Acme"), name="packing")
        for device_id in DEVICES:
            session.add(Device(device_id=device_id, key=KEY, worker=Worker(team=team, name=device_id)))
        token = auth.issue_agent_token(session, "agent")
    engine.dispose()
    return token


def uploads() -> list[tuple[str, int, bytes]]:
    """(device, records, frames) of every upload: each device's four hours as four hourly batches
    sent three times each, and as windows of 90 minutes every 30 (each overlapping the next)."""
    out = []
    for device_id in DEVICES:
        hours = [(1 + 60 * h, 60) for h in range(MINUTES // 60)]
        windows = [(first, min(90, MINUTES + 1 - first)) for first in range(1, MINUTES, 30)]
        for first, count in hours * 3 + windows:
            out.append((device_id, count, minutes_batch(first, JAN1 + 8 * 3600 + 60 * (first - 1), count)))
    return out


async def upload_all(base: str, token: str, batches: list[tuple[str, int, bytes]]) -> list[tuple[int, dict]]:
    """Every batch at once, each retried on a 503 after its Retry-After: (status, answer) of the
    final attempt, and the statuses of the retried ones in `retried`."""
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=len(batches))
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=120) as client:

        async def one(device_id: str, frames: bytes) -> tuple[int, dict]:
            body = {
                "device_id": device_id,
                "frames_b64": base64.b64encode(frames).decode(),
                "batch_mac_b64": base64.b64encode(batch_mac(KEY, device_id, frames)).decode(),
            }
            for _ in range(30):
                answer = await client.post("/api/ingest", json=body)
                if answer.status_code != 503:
                    return answer.status_code, answer.json()
                await asyncio.sleep(float(answer.headers["Retry-After"]))
            return 503, {}

        return await asyncio.gather(*(one(device_id, frames) for device_id, _, frames in batches))


def test_concurrent_identical_and_overlapping_uploads_store_each_record_once(db_url: str):
    with posture_serve(db_url, workers=2) as base:
        token = add_wearers(db_url)
        batches = uploads()
        answers = own_loop.run(upload_all(base, token, batches))

    assert {status for status, _ in answers} == {200}, answers
    stored_by_device: dict[str, int] = {}
    for (device_id, count, _), (_, answer) in zip(batches, answers, strict=True):
        assert answer["stored"] + answer["duplicates"] == count
        stored_by_device[device_id] = stored_by_device.get(device_id, 0) + answer["stored"]
    # No two answers claim the same record: each device's seqs were stored once between them.
    assert stored_by_device == dict.fromkeys(DEVICES, MINUTES)

    engine = make_engine(db_url)
    with session_factory(engine)() as session:
        for model in (Record, MinuteSummary):
            per_device = session.execute(
                sa.select(model.device_pk, sa.func.count(), sa.func.count(sa.distinct(model.seq))).group_by(
                    model.device_pk
                )
            ).all()
            assert [(n, distinct) for _, n, distinct in per_device] == [(MINUTES, MINUTES)] * len(DEVICES)
        assert session.scalars(sa.select(Device.contiguous_seq)).all() == [MINUTES] * len(DEVICES)
        # What a dashboard shows of each worker-day (recomputed after the uploads, or now if the
        # server stopped first) counts every minute.
        jan1 = dt.date(2026, 1, 1)
        workers = session.scalars(sa.select(Worker.id)).all()
        shown = worker_days(session, workers, jan1, jan1)
        assert [(row.metrics or {}).get("worn_s") for row in shown] == [MINUTES * 60] * len(DEVICES)
        assert {d for d in session.scalars(sa.select(DailyExposure.day))} == {jan1}
    engine.dispose()


def test_the_sync_agent_sends_a_batch_again_after_a_503s_retry_after():
    answers = [(503, {"Retry-After": "0"}, b'{"detail": "busy"}')] * 2
    answers.append((200, {}, b'{"stored": 3, "duplicates": 1, "contiguous_seq": 4}'))
    bodies: list[bytes] = []

    class Companion(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
            code, headers, body = answers[len(bodies) - 1]
            self.send_response(code)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Companion)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        upload = http_uploader(f"http://127.0.0.1:{server.server_address[1]}", "token")

        async def send() -> UploadResult:
            return await upload("C001", b"frames", b"mac")

        result = own_loop.run(send())
    finally:
        server.shutdown()
    assert (result.stored, result.duplicates) == (3, 1)
    assert len(bodies) == 3 and len(set(bodies)) == 1  # the same batch each time
