"""companion.store.bulk: statements compiled once per dialect and run on the DB-API cursor store
and read what SQLAlchemy's own execution would, and stay visible to statement listeners.

Runs on SQLite, and on PostgreSQL when POSTURE_TEST_POSTGRES_URL is set (fixtures from
tests/test_store.py)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa
import test_store
from sqlalchemy import Engine, bindparam, event, select, update

from companion.store import Device, Record, session_scope
from companion.store.bulk import BulkInsert, Prepared

db_url = test_store.db_url
engine = test_store.engine
add_worker_and_device = test_store.add_worker_and_device

RECEIVED = dt.datetime(2026, 1, 1, 7, 30, 15, 123456, tzinfo=dt.UTC)
RECORDS = BulkInsert(Record, ("seq", "rtype", "payload", "crc"), constants=("device_pk", "received_at"))
FIND = Prepared(
    select(Device.id, Device.device_id, Device.key, Device.contiguous_seq).where(
        Device.device_id == bindparam("device_id")
    ),
    constants=("device_id",),
)
# A statement carrying a value of its own (battery_percent) besides the ones given per call.
ACKED = Prepared(
    update(sa.table("devices", sa.column("id"), sa.column("contiguous_seq"), sa.column("battery_percent")))
    .where(sa.column("id") == bindparam("device_pk"))
    .values(contiguous_seq=bindparam("ack_seq"), battery_percent=55),
    constants=("device_pk", "ack_seq"),
)


def stored_records(engine: Engine) -> list[tuple[Any, ...]]:
    with session_scope(engine) as session:
        rows = session.execute(
            select(Record.seq, Record.rtype, Record.payload, Record.crc, Record.received_at)
        )
        return [(*row[:4], row[4].replace(tzinfo=None)) for row in rows]


def test_rows_go_in_from_columns_with_the_constants_in_each(engine: Engine):
    _, device_pk = add_worker_and_device(engine)
    with session_scope(engine) as session:
        RECORDS.execute(
            session.connection(),
            ([1, 2, 3], [1, 2, 12], [b"a", b"", b"\x00\xff"], [0, 4_000_000_000, 7]),
            device_pk=device_pk,
            received_at=RECEIVED,
        )
    naive = RECEIVED.replace(tzinfo=None)
    assert stored_records(engine) == [
        (1, 1, b"a", 0, naive),
        (2, 2, b"", 4_000_000_000, naive),
        (3, 12, b"\x00\xff", 7, naive),
    ]


def test_a_select_gives_the_drivers_values_and_an_update_keeps_the_values_of_its_own(engine: Engine):
    _, device_pk = add_worker_and_device(engine, key=b"\x01" * 32)
    with session_scope(engine) as session:
        connection = session.connection()
        assert FIND.fetch(connection, device_id="W017") == [(device_pk, "W017", b"\x01" * 32, None)]
        assert FIND.fetch(connection, device_id="nobody") == []
        ACKED.run(connection, device_pk=device_pk, ack_seq=41)
    with session_scope(engine) as session:
        device = session.get(Device, device_pk)
        assert device is not None
        assert (device.contiguous_seq, device.battery_percent) == (41, 55)


def test_statement_listeners_see_the_statements_which_then_go_through_sqlalchemy(engine: Engine):
    _, device_pk = add_worker_and_device(engine)
    seen: list[str] = []

    def listen(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement.split()[0])

    event.listen(engine, "before_cursor_execute", listen)
    try:
        with session_scope(engine) as session:
            connection = session.connection()
            RECORDS.execute(connection, ([5], [1], [b"x"], [9]), device_pk=device_pk, received_at=RECEIVED)
            assert FIND.fetch(connection, device_id="W017")[0][0] == device_pk
            ACKED.run(connection, device_pk=device_pk, ack_seq=5)
    finally:
        event.remove(engine, "before_cursor_execute", listen)
    assert seen == ["INSERT", "SELECT", "UPDATE"]
    assert [row[:4] for row in stored_records(engine)] == [(5, 1, b"x", 9)]


def test_a_driver_error_is_sqlalchemys_and_rolls_the_transaction_back(engine: Engine):
    _, device_pk = add_worker_and_device(engine)
    with pytest.raises(sa.exc.IntegrityError), session_scope(engine) as session:
        RECORDS.execute(
            session.connection(),
            ([1, 1], [1, 1], [b"", b""], [0, 0]),
            device_pk=device_pk,
            received_at=RECEIVED,
        )
    assert stored_records(engine) == []


def test_parameters_are_given_exactly(engine: Engine):
    add_worker_and_device(engine)
    with session_scope(engine) as session:
        connection = session.connection()
        with pytest.raises(TypeError, match="constants"):
            FIND.fetch(connection)
        with pytest.raises(TypeError, match="give 4 columns"):
            RECORDS.execute(connection, ([1], [1]), device_pk=1, received_at=RECEIVED)
        with pytest.raises(ValueError, match="differ in length"):
            RECORDS.execute(connection, ([1, 2], [1], [b""], [0]), device_pk=1, received_at=RECEIVED)
        RECORDS.execute(connection, ([], [], [], []), device_pk=1, received_at=RECEIVED)  # nothing to do
        with pytest.raises(ValueError, match="no parameter nobody"):
            Prepared(select(Device.id), constants=("nobody",)).fetch(connection, nobody=1)
    with pytest.raises(ValueError, match="no column"):
        BulkInsert(Record, ("seq", "colour"))
