"""The databases the scale and load benches run on: a SQLite file always, and PostgreSQL when
POSTURE_BENCH_POSTGRES_URL holds a SQLAlchemy URL (``postgresql+psycopg://user:pw@host/db``).

On PostgreSQL each run gets a schema of its own, put first on the search path and dropped
afterwards, so a bench never touches another user's tables in a shared database."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import make_url

POSTGRES_URL_ENV = "POSTURE_BENCH_POSTGRES_URL"


def postgres_server_url() -> str | None:
    return os.environ.get(POSTGRES_URL_ENV) or None


@contextmanager
def postgres_schema(server_url: str, prefix: str) -> Iterator[str]:
    """A URL whose search path starts at a new, empty schema, dropped on exit."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server_url, poolclass=sa.NullPool)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
    url = make_url(server_url).update_query_dict({"options": f"-csearch_path={name}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text("SET LOCAL lock_timeout = '20s'"))
            conn.execute(sa.text(f'DROP SCHEMA "{name}" CASCADE'))
        admin.dispose()


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def percentiles_ms(samples_s: list[float], *qs: int) -> list[float]:
    """The q-th percentiles of durations in seconds, in milliseconds (nan when there are none)."""
    if not samples_s:
        return [float("nan")] * len(qs)
    return [round(float(np.percentile(np.array(samples_s) * 1000.0, q)), 2) for q in qs]
