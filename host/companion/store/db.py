"""Engine, sessions and schema migrations of the store.

    engine = open_store()                 # settings' URL, migrated to the newest revision
    with session_scope(engine) as session:
        ...                               # committed on success, rolled back on an exception

Alembic is configured from code (:func:`alembic_config`): no alembic.ini is needed; the
migration scripts are ``host/companion/migrations``.  From a shell::

    python -c "from companion.store import upgrade_database; upgrade_database()"
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from companion.settings import get_settings

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def make_engine(url: str | None = None, **kwargs: Any) -> Engine:
    """An Engine for `url` (default: the settings' database).  For SQLite: the file's folder is
    created, foreign keys are enforced, and writers wait for the lock instead of failing."""
    if url is None:
        url = get_settings().resolved_database_url()
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("connect_args", {}).setdefault("timeout", 30)
    engine = create_engine(url, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_on_connect)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # SQLite leaves foreign keys unenforced unless asked, per connection.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def alembic_config(engine: Engine | None = None) -> Config:
    """Alembic configuration pointing at host/companion/migrations (and at `engine`, if given)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def upgrade_database(engine: Engine | str | None = None, revision: str = "head") -> Engine:
    """Run the migrations up to `revision` (default: the newest); returns the engine."""
    if not isinstance(engine, Engine):
        engine = make_engine(engine)
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
