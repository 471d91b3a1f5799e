"""Many rows into one table by a single DBAPI ``executemany``, for the ingest path.

    records = BulkInsert(Record, columns=("seq", "rtype", "payload", "crc"), constants=("device_pk", "received_at"))
    records.execute(connection, [(0, 1, b"...", 0x1234ABCD), ...], device_pk=7, received_at=now)

What it does is what ``connection.execute(insert(table), list_of_dicts)`` does: the statement is
SQLAlchemy's, compiled for the connection's dialect (once per dialect, without RETURNING), and
every value goes through its column type's bind processor (JSON → text, a datetime → SQLite's
text format, bytes → the driver's binary type) before the driver's ``executemany``.  What it leaves
out is that path's per-row machinery -- a parameter dict built, checked and processed row by row,
about 5 µs a row, which cost ingest more than the database's own work.  Here the processors run
column by column (``map`` over a column), and a column with the same value in every row of a call
(`constants`: the device, the owner, the time received) is processed once.  Rows are plain tuples
in `columns` order.

Statement events (``before_cursor_execute``), logging and the transaction are the connection's, as
for any ``Connection.exec_driver_sql``.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, Dialect, Table, insert
from sqlalchemy.sql.compiler import SQLCompiler

from .models import Base

# (SQL, [(column, parameter name, bind processor or None)] in statement order, positional?)
_Plan = tuple[str, list[tuple[str, str, Any]], bool]


class BulkInsert:
    """An INSERT of `columns` (per row) and `constants` (per call) into `model`'s table."""

    def __init__(self, model: type[Base], columns: Sequence[str], constants: Sequence[str] = ()) -> None:
        table = model.__table__
        assert isinstance(table, Table)
        unknown = [name for name in (*columns, *constants) if name not in table.c]
        if unknown:
            raise ValueError(f"{table.name} has no column {', '.join(unknown)}")
        self.table = table
        self.columns = tuple(columns)
        self.constants = frozenset(constants)
        self._plans: weakref.WeakKeyDictionary[Dialect, _Plan] = weakref.WeakKeyDictionary()

    def _plan(self, dialect: Dialect) -> _Plan:
        plan = self._plans.get(dialect)
        if plan is None:
            compiled = (
                insert(self.table)
                .inline()  # no RETURNING of the new ids
                .compile(dialect=dialect, column_keys=[*self.columns, *sorted(self.constants)])
            )
            assert isinstance(compiled, SQLCompiler)
            positional = compiled.positiontup is not None
            names = list(compiled.positiontup) if compiled.positiontup is not None else list(compiled.params)
            params = [
                (
                    name,
                    compiled.escaped_bind_names.get(name, name),
                    self.table.c[name].type.dialect_impl(dialect).bind_processor(dialect),
                )
                for name in names
            ]
            plan = (compiled.string, params, positional)
            self._plans[dialect] = plan
        return plan

    def execute(self, connection: Connection, rows: Sequence[tuple[Any, ...]], **constants: Any) -> None:
        """Insert `rows` (tuples in `columns` order) with the `constants` in every row."""
        if constants.keys() != self.constants:
            raise TypeError(f"{self.table.name}: give exactly the constants {sorted(self.constants)}")
        if not rows:
            return
        sql, params, positional = self._plan(connection.dialect)
        by_column = dict(zip(self.columns, zip(*rows, strict=True), strict=True))
        values: list[Iterable[Any]] = []
        for name, _, process in params:
            column = by_column.get(name)
            if column is not None:
                values.append(column if process is None else map(process, column))
            else:
                value = constants[name]
                values.append(itertools.repeat(value if process is None else process(value), len(rows)))
        parameters: list[Any] = list(zip(*values, strict=False))  # every iterable is len(rows) long
        if not positional:
            names = [parameter for _, parameter, _ in params]
            parameters = [dict(zip(names, row, strict=True)) for row in parameters]
        connection.exec_driver_sql(sql, parameters)
