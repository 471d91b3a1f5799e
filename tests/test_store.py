"""The companion store: migrations, constraints, settings.

Every test taking `db_url` runs on SQLite, and on PostgreSQL too when POSTURE_TEST_POSTGRES_URL
is set (e.g. ``postgresql+psycopg://user:pw@127.0.0.1:5432/db``): each on an empty database of
its own (tests/databases.py).  The fixtures here are shared with tests/test_ingest.py."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import databases
import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

import protocol
from companion.settings import Settings
from companion.store import (
    DailyExposure,
    Device,
    Event,
    MinuteSummary,
    Organisation,
    Record,
    Team,
    User,
    Worker,
    alembic_config,
    at_head,
    bins_from_bytes,
    bins_to_bytes,
    open_store,
    session_factory,
    session_scope,
    upgrade_database,
)
from companion.store.bulk import BulkInsert

TABLES = {
    "organisations",
    "teams",
    "workers",
    "users",
    "team_members",
    "devices",
    "records",
    "minute_summaries",
    "events",
    "daily_exposure",
}


# The fixture of tests/databases.py (also in conftest.py), under the name other modules use.
db_url = databases.db_url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A store migrated to the newest revision, as the app opens it at start-up."""
    engine = open_store(db_url)
    yield engine
    engine.dispose()


def add_worker_and_device(
    engine: Engine, device_id: str = "W017", key: bytes | None = b"k" * 32, timezone: str = "UTC"
) -> tuple[int, int]:
    """A worker (in a team) wearing a registered device: (worker id, device pk)."""
    with session_scope(engine) as session:
        org = Organisation(name=f"Acme {device_id}")
        team = Team(organisation=org, name="packing")
        worker = Worker(team=team, name=f"wearer of {device_id}", timezone=timezone)
        device = Device(device_id=device_id, key=key, worker=worker)
        session.add_all([org, team, worker, device])
        session.flush()
        return worker.id, device.id


# ---- migrations ---------------------------------------------------------------------------------


def test_upgrade_head_creates_every_table_and_can_run_again(db_url: str):
    engine = open_store(db_url)
    upgrade_database(engine)  # already at head: nothing to do, no error
    names = set(sa.inspect(engine).get_table_names())
    assert TABLES <= names
    assert "alembic_version" in names
    engine.dispose()


def test_migrations_match_the_models(engine: Engine):
    # Fails when a model changed without a new Alembic revision.
    command.check(alembic_config(engine))


def test_downgrade_to_base_and_back(engine: Engine):
    command.downgrade(alembic_config(engine), "base")
    assert not TABLES & set(sa.inspect(engine).get_table_names())
    upgrade_database(engine)
    assert TABLES <= set(sa.inspect(engine).get_table_names())


def test_a_store_at_the_newest_revision_opens_without_running_alembic(
    engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
):
    # What lets `posture serve --workers N` migrate once, in the parent, before forking.
    assert at_head(engine)

    def upgrade(*_args: object) -> None:
        raise AssertionError("Alembic ran on a store at head")

    monkeypatch.setattr(command, "upgrade", upgrade)
    open_store(db_url).dispose()


def test_processes_opening_an_empty_store_at_once_migrate_it_once(db_url: str):
    # Threads stand in for processes: each opens its own engine, as a worker process would.
    with ThreadPoolExecutor(3) as pool:
        engines = list(pool.map(lambda _: open_store(db_url), range(3)))
    assert all(at_head(e) for e in engines) and TABLES <= set(sa.inspect(engines[0]).get_table_names())
    for e in engines:
        e.dispose()


def test_many_processes_opening_a_new_sqlite_file_at_once_all_get_it(tmp_path: Path):
    """Each connection to a file switches it to WAL; SQLite refuses that switch at once (no busy
    wait) while another connection reads the file, so `posture serve --workers N` starting on a
    new store used to lose a worker now and then to "database is locked"."""
    for attempt in range(15):
        url = f"sqlite:///{tmp_path / f'new{attempt}.db'}"
        with ThreadPoolExecutor(8) as pool:
            engines = list(pool.map(open_store, [url] * 8))
        assert all(at_head(e) for e in engines)
        for e in engines:
            e.dispose()


# ---- constraints and round trips ----------------------------------------------------------------


def test_a_device_seq_is_stored_once(engine: Engine):
    _, device_pk = add_worker_and_device(engine)
    row = {"device_pk": device_pk, "seq": 7, "rtype": 5, "payload": b"\0" * 6, "crc": 0}
    with session_scope(engine) as session:
        session.execute(sa.insert(Record), [row])
    with pytest.raises(IntegrityError), session_scope(engine) as session:
        session.execute(sa.insert(Record), [row])


def test_the_same_seq_from_two_devices_is_fine(engine: Engine):
    _, a = add_worker_and_device(engine, "A1")
    _, b = add_worker_and_device(engine, "B2")
    with session_scope(engine) as session:
        session.execute(
            sa.insert(Record),
            [{"device_pk": pk, "seq": 7, "rtype": 5, "payload": b"", "crc": 0} for pk in (a, b)],
        )
        assert session.scalar(sa.select(sa.func.count()).select_from(Record)) == 2


def test_a_bulk_insert_stores_what_a_core_insert_stores(engine: Engine):
    worker_id, device_pk = add_worker_and_device(engine)
    received = dt.datetime(2026, 1, 1, 7, 30, 15, 123456, tzinfo=dt.UTC)
    fields = {"start_s": 1_767_250_000, "time_to_correct_s": None, "outcome": 0}
    event = {"rtype": "alert", "time_s": 1_767_250_000, "fields": fields}
    record = {"rtype": 3, "payload": b"\x00\xff", "crc": 4_000_000_000}
    events = BulkInsert(Event, ("seq", *event), constants=("device_pk", "worker_id"))
    records = BulkInsert(Record, ("seq", *record), constants=("device_pk", "received_at"))
    with session_scope(engine) as session:
        connection = session.connection()
        events.execute(
            connection, [[1], *([v] for v in event.values())], device_pk=device_pk, worker_id=worker_id
        )
        records.execute(
            connection, [[1], *([v] for v in record.values())], device_pk=device_pk, received_at=received
        )
        session.execute(
            sa.insert(Event), [{**event, "seq": 2, "device_pk": device_pk, "worker_id": worker_id}]
        )
        session.execute(
            sa.insert(Record), [{**record, "seq": 2, "device_pk": device_pk, "received_at": received}]
        )
    with session_scope(engine) as session:
        for model in (Event, Record):
            bulk, core = session.execute(sa.select(model.__table__).order_by(model.seq)).all()
            assert bulk._asdict() | {"id": 0, "seq": 0} == core._asdict() | {"id": 0, "seq": 0}
        stored = session.scalars(sa.select(Record).where(Record.seq == 1)).one()
        assert (stored.device_pk, stored.payload, stored.crc) == (device_pk, b"\x00\xff", 4_000_000_000)
        assert stored.received_at.replace(tzinfo=None) == received.replace(tzinfo=None)
        assert session.scalars(sa.select(Event.fields).where(Event.seq == 1)).one() == fields
    with pytest.raises(TypeError, match="constants"), session_scope(engine) as session:
        records.execute(session.connection(), [], device_pk=device_pk)
    with pytest.raises(IntegrityError), session_scope(engine) as session:  # seq 1 is taken
        records.execute(
            session.connection(), [[1], [3], [b""], [0]], device_pk=device_pk, received_at=received
        )


def test_user_roles_are_checked(engine: Engine):
    with session_scope(engine) as session:
        session.add(User(email="erg@example.org", password_hash="x", role="ergonomist"))
    with pytest.raises(IntegrityError), session_scope(engine) as session:
        session.add(User(email="boss@example.org", password_hash="x", role="boss"))


def test_minute_histograms_round_trip_as_packed_bytes(engine: Engine):
    worker_id, device_pk = add_worker_and_device(engine)
    flexion = [0, 3, 50, 7] + [0] * 16
    inclination = [0] * 19 + [60]
    with session_scope(engine) as session:
        session.add(
            MinuteSummary(
                device_pk=device_pk,
                worker_id=worker_id,
                seq=1,
                start_s=4_000_000_000,  # beyond a signed 32-bit integer
                worn_s=60,
                flexion_bins=bins_to_bytes(flexion),
                inclination_bins=bins_to_bytes(inclination),
                lateral_bins=bins_to_bytes([0, 0, 60, 0, 0]),
                activity_s=bins_to_bytes([0, 60, 0, 0, 0]),
                alert_count=1,
                longest_bout_s=12,
                curvature_mean_ddeg=-35,
            )
        )
    with session_scope(engine) as session:
        minute = session.scalars(sa.select(MinuteSummary)).one()
        assert minute.start_s == 4_000_000_000
        assert bins_from_bytes(minute.flexion_bins) == flexion
        assert bins_from_bytes(minute.inclination_bins) == inclination
        assert len(minute.flexion_bins) == protocol.ANGLE_BINS


def test_daily_exposure_is_one_row_per_worker_day_with_json_metrics(engine: Engine):
    worker_id, _ = add_worker_and_device(engine)
    day = dt.date(2026, 1, 1)
    with session_scope(engine) as session:
        session.add(DailyExposure(worker_id=worker_id, day=day, metrics={"worn_s": 5, "p": [1.5, None]}))
    with session_scope(engine) as session:
        row = session.scalars(sa.select(DailyExposure)).one()
        assert row.metrics == {"worn_s": 5, "p": [1.5, None]}
    with pytest.raises(IntegrityError), session_scope(engine) as session:
        session.add(DailyExposure(worker_id=worker_id, day=day))


def test_workers_default_to_utc(engine: Engine):
    with session_scope(engine) as session:
        session.add(Worker(name="no zone given"))
    with session_factory(engine)() as session:
        assert session.scalars(sa.select(Worker.timezone)).one() == "UTC"


# ---- settings -----------------------------------------------------------------------------------


def test_default_database_is_a_sqlite_file_in_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("POSTURE_DATABASE_URL", raising=False)
    monkeypatch.setenv("POSTURE_DATA_DIR", str(tmp_path / "data"))
    url = Settings().resolved_database_url()
    assert url == f"sqlite:///{tmp_path / 'data' / 'posture.db'}"
    engine = open_store(url)
    assert (tmp_path / "data" / "posture.db").exists()
    engine.dispose()


def test_database_url_from_the_environment_wins(monkeypatch: pytest.MonkeyPatch):
    url = "postgresql+psycopg://posture:pw@db.example.org/posture"
    monkeypatch.setenv("POSTURE_DATABASE_URL", url)
    assert Settings().resolved_database_url() == url
