"""The databases the companion's tests run on: a SQLite file always, and PostgreSQL too when
POSTURE_TEST_POSTGRES_URL is set (e.g. ``postgresql+psycopg://user:pw@127.0.0.1:5432/db``, as
.ci/run sets it inside pg_virtualenv).

Each test gets an empty database of its own: a new SQLite file in its tmp_path, or a new
PostgreSQL schema (``CREATE SCHEMA``, well under a millisecond, where a ``CREATE DATABASE``
takes ~80 ms) that the URL puts first on the search path and that is dropped afterwards.

    def test_something(db_url: str): ...        # runs as test_something[sqlite] and [postgres]

A fixture of wider scope takes one with :func:`database_url`::

    @pytest.fixture(scope="module", params=BACKENDS)
    def world(request, tmp_path_factory):
        with database_url(request.param, tmp_path_factory.mktemp("w")) as url: ...
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

POSTGRES_URL_ENV = "POSTURE_TEST_POSTGRES_URL"
BACKENDS = ("sqlite", "postgres")


def postgres_url() -> str:
    """POSTURE_TEST_POSTGRES_URL, or skip the test that needs it."""
    url = os.environ.get(POSTGRES_URL_ENV)
    if not url:
        pytest.skip(f"{POSTGRES_URL_ENV} is not set")
    return url


@contextmanager
def fresh_postgres_schema(server_url: str) -> Iterator[str]:
    """A URL of `server_url`'s database whose search path starts at a new, empty schema (so
    tables, Alembic's version table and reflection all land there); the schema is dropped after."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(server_url, poolclass=sa.NullPool)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
    url = make_url(server_url).update_query_dict({"options": f"-csearch_path={name}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        # A connection a test left inside a transaction would hold the drop forever: give up
        # after a while instead (the cluster is a throw-away one).
        try:
            with admin.begin() as conn:
                conn.execute(sa.text("SET LOCAL lock_timeout = '10s'"))
                conn.execute(sa.text(f'DROP SCHEMA "{name}" CASCADE'))
        except sa.exc.OperationalError:
            pass
        admin.dispose()


@contextmanager
def database_url(backend: str, tmp: Path) -> Iterator[str]:
    """An empty database on `backend` ("sqlite": a file in `tmp`; "postgres": a fresh schema)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp / 'posture.db'}"
        return
    with fresh_postgres_schema(postgres_url()) as url:
        yield url


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """"sqlite" or "postgres" (skipped unless POSTURE_TEST_POSTGRES_URL is set), for a test that
    makes several databases with :func:`database_url`."""
    if request.param == "postgres":
        postgres_url()
    return request.param


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of the test's own: a SQLite file, or a fresh PostgreSQL schema."""
    with database_url(request.param, tmp_path) as url:
        yield url
