"""Hundreds of agents uploading at once must not take every thread of a serve process: the
dashboard's routes run on the same thread pool, and an ergonomist's page waited seconds behind
uploads queued for the database's write lock (bench/load.py).  Upload transactions now take one
of a few slots per process (SQLite: one) and the others wait on the event loop."""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from pathlib import Path

import httpx
import own_loop
import pytest
from test_ingest import JAN1, minutes_batch

from companion import auth
from companion.api.app import create_app
from companion.api.routes import ingest as ingest_route
from companion.api.schemas import IngestOut
from companion.settings import Settings
from companion.store import Device, Organisation, Team, Worker, session_scope


def test_concurrent_uploads_hold_one_thread_at_a_time_on_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'slots.db'}", data_dir=tmp_path))
    with session_scope(app.state.store) as session:
        team = Team(organisation=Organisation(name="Acme"), name="packing")
        session.add(Device(device_id="W017", key=None, worker=Worker(team=team, name="Ana")))
        token = auth.issue_agent_token(session, "agent")
    running, most = 0, 0
    lock = threading.Lock()

    def slow_store(*_args: object) -> tuple[IngestOut, list]:  # the upload's transaction, in a pool thread
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return IngestOut(stored=1, duplicates=0, contiguous_seq=1), []  # no worker-days touched

    monkeypatch.setattr(ingest_route, "_store", slow_store)
    body = {"device_id": "W017", "frames_b64": base64.b64encode(minutes_batch(1, JAN1, 1)).decode()}

    async def upload_many() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            answers = await asyncio.gather(
                *(
                    client.post("/api/ingest", json=body, headers={"Authorization": f"Bearer {token}"})
                    for _ in range(8)
                )
            )
        return [a.status_code for a in answers]

    assert own_loop.run(upload_many()) == [200] * 8
    assert most == ingest_route.SQLITE_INGEST_SLOTS == 1


def test_an_upload_that_waits_too_long_for_a_slot_gets_a_503_with_retry_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'busy.db'}", data_dir=tmp_path))
    with session_scope(app.state.store) as session:
        team = Team(organisation=Organisation(name="Acme"), name="packing")
        session.add(Device(device_id="W017", key=None, worker=Worker(team=team, name="Ana")))
        token = auth.issue_agent_token(session, "agent")

    def slow_store(*_args: object) -> tuple[IngestOut, list]:
        time.sleep(0.5)
        return IngestOut(stored=1, duplicates=0, contiguous_seq=1), []  # no worker-days touched

    monkeypatch.setattr(ingest_route, "_store", slow_store)
    monkeypatch.setattr(ingest_route, "SLOT_WAIT_S", 0.1)
    body = {"device_id": "W017", "frames_b64": base64.b64encode(minutes_batch(1, JAN1, 1)).decode()}

    async def two_at_once() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            headers = {"Authorization": f"Bearer {token}"}
            return await asyncio.gather(
                *(client.post("/api/ingest", json=body, headers=headers) for _ in range(2))
            )

    answers = own_loop.run(two_at_once())
    assert sorted(a.status_code for a in answers) == [200, 503]
    busy = next(a for a in answers if a.status_code == 503)
    assert busy.headers["Retry-After"] == str(ingest_route.RETRY_AFTER_S)
