"""Alembic environment of the companion store.

Configured from code by companion.store.alembic_config(engine): the engine arrives in
``config.attributes["engine"]``; without one, the settings' database URL is used."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from companion.store.db import make_engine
from companion.store.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    from companion.settings import get_settings

    context.configure(
        url=config.get_main_option("sqlalchemy.url") or get_settings().resolved_database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if not isinstance(engine, Engine):
        engine = make_engine(config.get_main_option("sqlalchemy.url") or None)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            # SQLite cannot ALTER most things: batch mode rebuilds tables there.
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
