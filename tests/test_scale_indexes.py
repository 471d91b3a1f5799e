"""The queries docs/scale.md names are served by indexes: on a year of 10,000 wearers a scan of
minute_summaries or records (a billion rows each) would take minutes, not milliseconds.

Checked with SQLite's EXPLAIN QUERY PLAN on the migrated schema: a SEARCH through an index, never
a SCAN of the big tables."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from companion import datarights
from companion.store import MinuteSummary, Record, open_store, session_factory
from companion.store.models import DailyExposure, Device, Event, Worker


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> sa.Engine:
    return open_store(f"sqlite:///{Path(tmp_path_factory.mktemp('scale')) / 'plan.db'}")


def plan(engine: sa.Engine, statement: sa.ClauseElement) -> str:
    sql = str(statement.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))
    with engine.connect() as conn:
        return "\n".join(row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))


def test_the_team_dashboard_finds_a_teams_workers_and_days_by_index(engine: sa.Engine):
    workers = plan(engine, sa.select(Worker).where(Worker.team_id == 7))
    assert "USING INDEX ix_workers_team_id" in workers
    days = plan(
        engine,
        sa.select(DailyExposure).where(
            DailyExposure.worker_id.in_([1, 2, 3]),
            DailyExposure.day >= "2026-01-01",
            DailyExposure.day <= "2026-01-28",
        ),
    )
    assert "SEARCH daily_exposure USING INDEX" in days, days  # the (worker_id, day) unique key


def test_a_worker_day_reads_minutes_and_events_by_index(engine: sa.Engine):
    m = plan(
        engine,
        sa.select(MinuteSummary).where(
            MinuteSummary.worker_id == 1, MinuteSummary.start_s >= 0, MinuteSummary.start_s < 86400
        ),
    )
    assert "USING INDEX ix_minute_summaries_worker_start" in m, m
    e = plan(
        engine,
        sa.select(Event).where(
            Event.worker_id == 1, Event.rtype == "bout", Event.time_s >= 0, Event.time_s < 86400
        ),
    )
    assert "USING INDEX ix_events_worker_type_time" in e, e


def test_a_workers_export_reads_only_the_records_of_the_devices_they_wore(engine: sa.Engine):
    with session_factory(engine)() as session:
        where = datarights.worker_rows(session, 1)
    records = plan(engine, sa.select(Record).where(where["records"]))
    assert "SCAN records" not in records, records
    assert "SEARCH records USING INDEX" in records, records  # the (device_pk, seq) unique key
    devices = plan(engine, sa.select(Device).where(Device.worker_id == 1))
    assert "USING INDEX ix_devices_worker_id" in devices, devices


def test_ingest_finds_a_batchs_stored_records_by_device_and_seq(engine: sa.Engine):
    stored = plan(
        engine,
        sa.select(Record.seq).where(Record.device_pk == 1, Record.seq.between(10, 250) | (Record.seq > 9)),
    )
    assert "SCAN records" not in stored, stored
