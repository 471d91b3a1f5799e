"""The team page judges rotation compliance for every worker-day of eight weeks; asking "did the
worker work that day?" with one query per day made a 25-wearer team's page take seconds under
load (bench/load.py).  It is one query per worker-week now, with the same answers."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import sqlalchemy as sa
from test_ingest import JAN1, minutes_batch
from test_store import add_worker_and_device

from companion.api.routes.rotation import worked_days
from companion.ingest import ingest_batch
from companion.store import Worker, open_store, session_factory


def test_worked_days_answers_every_day_of_a_week_in_one_query(tmp_path: Path):
    engine = open_store(f"sqlite:///{tmp_path / 'team.db'}")
    worker_id, _ = add_worker_and_device(engine, timezone="Europe/Paris")
    # Thursday 2026-01-01 from 08:00 UTC, and 23:30 UTC on Saturday: already Sunday in Paris.
    with session_factory(engine)() as session:
        ingest_batch(session, "W017", minutes_batch(1, JAN1 + 8 * 3600, 30), None, require_hmac=False)
    with session_factory(engine)() as session:
        ingest_batch(
            session,
            "W017",
            minutes_batch(31, JAN1 + 2 * 86_400 + 23 * 3600 + 1800, 10),
            None,
            require_hmac=False,
        )
    monday = dt.date(2025, 12, 29)
    week = [monday + dt.timedelta(days=k) for k in range(7)]
    statements: list[str] = []
    with session_factory(engine)() as session:
        worker = session.get(Worker, worker_id)
        assert worker is not None
        sa.event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
        answer = worked_days(session, worker, week)
    assert answer == [False, False, False, True, False, False, True]
    assert len(statements) == 1
