"""Every row of every table of the store: what "a refused request changes nothing" compares
(tests/test_fuzz_protocol.py, tests/test_api_schemathesis.py)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from companion.store import Base

# Tables a refusal writes on purpose: the failed logins the login rate limit counts.
REFUSALS_RECORDED = frozenset({"login_failures"})


def database_rows(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Each table's rows, in a stable order, every column as stored (but REFUSALS_RECORDED)."""
    with engine.connect() as connection:
        return {
            table.name: sorted((tuple(row) for row in connection.execute(sa.select(table))), key=repr)
            for table in Base.metadata.sorted_tables
            if table.name not in REFUSALS_RECORDED
        }
