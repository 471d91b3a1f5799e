"""Engine, sessions and schema migrations of the store.

    engine = open_store()                 # settings' URL, migrated to the newest revision
    with session_scope(engine) as session:
        ...                               # committed on success, rolled back on an exception

Alembic is configured from code (:func:`alembic_config`): no alembic.ini is needed; the
migration scripts are ``host/companion/migrations``.  From a shell::

    python -c "from companion.store import upgrade_database; upgrade_database()"
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, exc, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from companion.settings import get_settings

try:
    import fcntl
except ImportError:  # Windows: no flock there; start one migrating process at a time
    fcntl = None  # type: ignore[assignment]

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


# SQLite: how long a writer waits for another connection's write lock before "database is locked".
SQLITE_BUSY_TIMEOUT_S = 30
# PostgreSQL: the advisory lock one migrating process holds (any constant of our own).
_MIGRATION_LOCK_KEY = 0x706F7374  # "post"


def make_engine(url: str | None = None, **kwargs: Any) -> Engine:
    """An Engine for `url` (default: the settings' database).  For SQLite: the file's folder is
    created, foreign keys are enforced, a file is in WAL mode (readers never wait for the writer,
    which several ``posture serve`` workers need), and writers wait for the lock instead of failing."""
    if url is None:
        url = get_settings().resolved_database_url()
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        in_memory = not parsed.database or parsed.database == ":memory:"
        if not in_memory:
            Path(parsed.database or "").parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("connect_args", {}).setdefault("timeout", SQLITE_BUSY_TIMEOUT_S)
    engine = create_engine(url, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_on_connect if in_memory else _sqlite_file_on_connect)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # SQLite leaves foreign keys unenforced unless asked, per connection.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_file_on_connect(dbapi_connection: Any, record: Any) -> None:
    _sqlite_on_connect(dbapi_connection, record)
    # WAL is a property of the file (kept once set; asking again is a no-op).  synchronous stays
    # FULL: a committed batch is acknowledged to the device, which then frees that flash.
    cursor = dbapi_connection.cursor()
    try:
        if cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
            return
        # Switching needs the file to itself, and SQLite answers "database is locked" at once
        # (no busy wait) while another connection reads it: several processes opening a new
        # store at the same moment do.  Try again until one of them has switched it.
        deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
        while True:
            try:
                cursor.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
            time.sleep(0.01)
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                return
    finally:
        cursor.close()


def lost_race(error: BaseException) -> bool:
    """Whether a database error means the transaction lost a race with a concurrent one, so that
    running it again from the start can succeed: a serialisation failure, a deadlock, a lock not
    granted in time, a unique key another transaction inserted first, SQLite's "database is
    locked", or no pooled connection free in time."""
    if isinstance(error, exc.TimeoutError):
        return True
    if not isinstance(error, exc.DBAPIError):
        return False
    sqlstate = getattr(error.orig, "sqlstate", None)  # psycopg
    if sqlstate is not None:
        return sqlstate in ("40001", "40P01", "55P03", "23505")
    message = str(error.orig)
    if isinstance(error, exc.IntegrityError):
        return message.startswith("UNIQUE constraint failed")
    return isinstance(error, exc.OperationalError) and "database is locked" in message


def alembic_config(engine: Engine | None = None) -> Config:
    """Alembic configuration pointing at host/companion/migrations (and at `engine`, if given)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if engine is not None:
        config.attributes["engine"] = engine
    return config


@lru_cache(maxsize=1)
def _head_revisions() -> frozenset[str]:
    return frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


def at_head(engine: Engine) -> bool:
    """Whether the database is migrated to the newest revision (one query)."""
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_heads()
    return frozenset(current) == _head_revisions()


@contextmanager
def _one_migrator(engine: Engine) -> Iterator[None]:
    """One process migrates a database at a time: any other waits, then finds the work done.
    PostgreSQL: a session advisory lock.  A SQLite file: an exclusive flock on ``<file>.migrating``
    beside it (left there; not the database file itself, whose POSIX locks SQLite owns)."""
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        if fcntl is None or not database or database == ":memory:":
            yield
            return
        with open(f"{database}.migrating", "a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)
        return
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
        connection.commit()
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _MIGRATION_LOCK_KEY})
            connection.commit()


def upgrade_database(engine: Engine | str | None = None, revision: str = "head") -> Engine:
    """Run the migrations up to `revision` (default: the newest); returns the engine.  A store
    already at the newest revision is left alone without running Alembic: so the worker processes
    of ``posture serve --workers N`` only check what the parent migrated before starting them."""
    if not isinstance(engine, Engine):
        engine = make_engine(engine)
    if revision == "head" and at_head(engine):
        return engine
    with _one_migrator(engine):
        if revision != "head" or not at_head(engine):
            command.upgrade(alembic_config(engine), revision)
    return engine


def open_store(url: str | None = None) -> Engine:
    """The engine of a migrated store: what the app calls at start-up."""
    return upgrade_database(make_engine(url))


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: commit when the block ends normally, roll back on an exception."""
    with session_factory(engine)() as session, session.begin():
        yield session
