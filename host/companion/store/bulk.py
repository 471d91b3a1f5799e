"""Statements the ingest path runs for every batch: compiled once per dialect, run on the DB-API
cursor of the connection's transaction.

    records = BulkInsert(Record, ("seq", "rtype", "payload", "crc"), constants=("device_pk", "received_at"))
    records.execute(connection, (seqs, rtypes, payloads, crcs), device_pk=7, received_at=now)

    find = Prepared(select(Device.id).where(Device.device_id == bindparam("device_id")), constants=("device_id",))
    find.fetch(connection, device_id="W017")            # [(7,)]: the driver's values, as tuples

What it does is what ``connection.execute(statement, parameters)`` does: the statement is
SQLAlchemy's, compiled for the connection's dialect (inserts without RETURNING), and every value
goes through its column type's bind processor (JSON → text, a datetime → SQLite's text format)
before the driver sees it.  What it leaves out is the per-statement and per-row machinery -- a
parameter dict built, checked and processed row by row (~5 µs a row), an execution context and a
result object (~40 µs a statement) -- which cost ingest more than the database's own work:

- Per-row values come as columns (one sequence per column) and are zipped into the driver's rows
  in C; a processor is mapped over its column, a value that is the same in every row of a call
  (`constants`: the device, its owner, the time received) is processed once.
- Bytes for a binary column go to sqlite3 and psycopg as they are: SQLAlchemy's processor only
  wraps them in the DB-API's ``Binary`` (for drivers such as pg8000, which keep it).
- The paramstyle is the driver's, settled once per dialect: tuples for a positional one (sqlite3's
  ``?``), dicts for a named one (psycopg's ``%(name)s``).
- Statements go to the DB-API cursor; a driver error comes back as SQLAlchemy's
  (``sqlalchemy.exc.IntegrityError``, ...), and a lost connection is invalidated, as SQLAlchemy
  would.  While anyone listens to the engine's statement events (``before_cursor_execute``) or
  it echoes SQL, statements go through ``Connection.exec_driver_sql`` instead, so that listeners
  and the log see them.

`fetch` returns the driver's values without SQLAlchemy's result processing: select integers,
strings and bytes with it, not types SQLAlchemy converts (dates on SQLite).
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from sqlalchemy import Connection, Dialect, LargeBinary, Table, insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from .models import Base

# Drivers (Dialect.driver) that take bytes for a binary column as they are.
_DRIVERS_TAKING_BYTES = frozenset(("pysqlite", "psycopg", "psycopg2"))

_Processor = Callable[[Any], Any]


class _Plan(NamedTuple):
    """A statement compiled for one dialect."""

    sql: str
    # One entry per bound parameter in statement order: (where its value comes from -- "column"
    # with its index, "constant" with its name, "fixed" with the processed value the statement
    # carries --, the bind processor or None, the driver's name for it).
    slots: tuple[tuple[str, Any, _Processor | None, str], ...]
    positional: bool


def _observed(connection: Connection) -> bool:
    """Whether statement events or SQL echo want to see this connection's statements (SQLAlchemy
    keeps these as private attributes: if they ever move, every statement takes the observed way)."""
    return bool(
        getattr(connection, "_has_events", True)
        or getattr(connection.engine, "_has_events", True)
        or getattr(connection, "_echo", True)
    )


class Prepared:
    """A statement run with `columns` (per row, `run_many`) and `constants` (per call) as its
    bound parameters, by name; any other parameter keeps the value the statement gives it.

    `statement` may be a function of the dialect, for statements whose form differs by backend."""

    def __init__(
        self,
        statement: ClauseElement | Callable[[Dialect], ClauseElement],
        columns: Sequence[str] = (),
        constants: Sequence[str] = (),
        *,
        column_keys: Sequence[str] | None = None,
    ) -> None:
        self.statement = statement
        self.columns = tuple(columns)
        self.constants = frozenset(constants)
        self._column_keys = None if column_keys is None else list(column_keys)
        self._plans: weakref.WeakKeyDictionary[Dialect, _Plan] = weakref.WeakKeyDictionary()

    def _plan(self, dialect: Dialect) -> _Plan:
        plan = self._plans.get(dialect)
        if plan is None:
            plan = self._compile(dialect)
            self._plans[dialect] = plan
        return plan

    def _compile(self, dialect: Dialect) -> _Plan:
        statement = self.statement if isinstance(self.statement, ClauseElement) else self.statement(dialect)
        compiled = statement.compile(dialect=dialect, column_keys=self._column_keys)
        assert isinstance(compiled, SQLCompiler)
        positional = compiled.positiontup is not None
        names = list(compiled.positiontup) if compiled.positiontup is not None else list(compiled.params)
        binds = {compiled.bind_names[bind]: bind for bind in compiled.binds.values()}
        missing = [name for name in (*self.columns, *self.constants) if name not in names]
        if missing:
            raise ValueError(f"the statement has no parameter {', '.join(missing)}")
        index = {name: i for i, name in enumerate(self.columns)}
        takes_bytes = dialect.driver in _DRIVERS_TAKING_BYTES
        slots: list[tuple[str, Any, _Processor | None, str]] = []
        for name in names:
            bind_type = binds[name].type
            process = bind_type.dialect_impl(dialect).bind_processor(dialect)
            if takes_bytes and isinstance(bind_type, LargeBinary):
                process = None
            key = compiled.escaped_bind_names.get(name, name)
            if name in index:
                slots.append(("column", index[name], process, key))
            elif name in self.constants:
                slots.append(("constant", name, process, key))
            else:
                value = compiled.params[name]
                slots.append(("fixed", value if process is None else process(value), None, key))
        return _Plan(compiled.string, tuple(slots), positional)

    def _check(self, constants: dict[str, Any]) -> None:
        if constants.keys() != self.constants:
            raise TypeError(f"give exactly the constants {sorted(self.constants)}, not {sorted(constants)}")

    def _one(self, plan: _Plan, constants: dict[str, Any]) -> Any:
        values = []
        for source, what, process, _ in plan.slots:
            if source == "fixed":
                values.append(what)
            elif source == "constant":
                value = constants[what]
                values.append(value if process is None else process(value))
            else:
                raise TypeError(f"{what}: a per-row column needs run_many")
        if plan.positional:
            return tuple(values)
        return {key: value for (_, _, _, key), value in zip(plan.slots, values, strict=True)}

    def fetch(self, connection: Connection, **constants: Any) -> list[tuple[Any, ...]]:
        """Run the statement once; its rows as tuples of the driver's values."""
        self._check(constants)
        plan = self._plan(connection.dialect)
        rows = _run(connection, plan.sql, self._one(plan, constants), many=False, fetch=True)
        assert rows is not None
        return rows

    def run(self, connection: Connection, **constants: Any) -> None:
        """Run the statement once."""
        self._check(constants)
        plan = self._plan(connection.dialect)
        _run(connection, plan.sql, self._one(plan, constants), many=False, fetch=False)

    def run_many(self, connection: Connection, columns: Sequence[Sequence[Any]], **constants: Any) -> None:
        """Run the statement once per row: `columns` holds each of `self.columns`' values, one
        sequence per column (all as long), `constants` the values every row shares."""
        self._check(constants)
        if len(columns) != len(self.columns):
            raise TypeError(
                f"give {len(self.columns)} columns ({', '.join(self.columns)}), not {len(columns)}"
            )
        n = len(columns[0]) if columns else 0
        if any(len(column) != n for column in columns):
            raise ValueError("the columns differ in length")
        if not n:
            return
        plan = self._plan(connection.dialect)
        values: list[Iterable[Any]] = []
        for source, what, process, _ in plan.slots:
            if source == "column":
                column = columns[what]
                values.append(column if process is None else map(process, column))
            else:
                value = constants[what] if source == "constant" else what
                if source == "constant" and process is not None:
                    value = process(value)
                values.append(itertools.repeat(value, n))
        rows: Iterable[Any] = zip(*values, strict=False)  # every iterable is n long
        if not plan.positional:
            keys = [key for _, _, _, key in plan.slots]
            rows = [dict(zip(keys, row, strict=True)) for row in rows]
        _run(connection, plan.sql, rows, many=True, fetch=False)


class BulkInsert(Prepared):
    """An INSERT of `columns` (per row) and `constants` (per call) into `model`'s table."""

    def __init__(self, model: type[Base], columns: Sequence[str], constants: Sequence[str] = ()) -> None:
        table = model.__table__
        assert isinstance(table, Table)
        unknown = [name for name in (*columns, *constants) if name not in table.c]
        if unknown:
            raise ValueError(f"{table.name} has no column {', '.join(unknown)}")
        self.table = table
        super().__init__(
            insert(table).inline(),  # no RETURNING of the new ids
            columns,
            constants,
            column_keys=[*columns, *sorted(constants)],
        )

    def execute(self, connection: Connection, columns: Sequence[Sequence[Any]], **constants: Any) -> None:
        """Insert one row per entry of the `columns` (one sequence per column, in `self.columns`
        order) with the `constants` in every row."""
        self.run_many(connection, columns, **constants)


def _run(
    connection: Connection, sql: str, parameters: Any, *, many: bool, fetch: bool
) -> list[tuple[Any, ...]] | None:
    if _observed(connection):
        result = connection.exec_driver_sql(sql, list(parameters) if many else parameters)
        return [tuple(row) for row in result] if fetch else None
    dialect = connection.dialect
    dbapi_connection = connection.connection.dbapi_connection
    assert dbapi_connection is not None
    cursor = dbapi_connection.cursor()
    try:
        if many:
            cursor.executemany(sql, parameters)
        else:
            cursor.execute(sql, parameters)
        return list(cursor.fetchall()) if fetch else None
    except dialect.loaded_dbapi.Error as exc:
        lost = dialect.is_disconnect(exc, dbapi_connection, cursor)
        if lost:
            connection.invalidate(exc)
        raise DBAPIError.instance(
            sql, None, exc, dialect.loaded_dbapi.Error, connection_invalidated=lost, dialect=dialect
        ) from exc
    finally:
        cursor.close()
