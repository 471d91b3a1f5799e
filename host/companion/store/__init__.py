"""The companion's SQL store: SQLAlchemy 2 models, engine/session helpers, Alembic migrations.

SQLite file by default, PostgreSQL (or any SQLAlchemy backend) via ``POSTURE_DATABASE_URL``.
"""

from __future__ import annotations

from collections.abc import Sequence

from .db import (
    MIGRATIONS_DIR,
    alembic_config,
    at_head,
    lost_race,
    make_engine,
    open_store,
    session_factory,
    session_scope,
    upgrade_database,
)
from .models import (
    LOAD_CLASSES,
    ROLES,
    SEGMENT_SOURCES,
    AgentToken,
    ApiToken,
    Base,
    DailyExposure,
    Device,
    DeviceSettings,
    Event,
    LoginFailure,
    MinuteSummary,
    Organisation,
    Record,
    RotationPolicy,
    Task,
    TaskSegment,
    Team,
    TeamMember,
    User,
    Worker,
    WorkerSettings,
)

__all__ = [
    "LOAD_CLASSES",
    "MIGRATIONS_DIR",
    "ROLES",
    "SEGMENT_SOURCES",
    "AgentToken",
    "ApiToken",
    "Base",
    "DailyExposure",
    "Device",
    "DeviceSettings",
    "Event",
    "LoginFailure",
    "MinuteSummary",
    "Organisation",
    "Record",
    "RotationPolicy",
    "Task",
    "TaskSegment",
    "Team",
    "TeamMember",
    "User",
    "Worker",
    "WorkerSettings",
    "alembic_config",
    "at_head",
    "bins_from_bytes",
    "bins_to_bytes",
    "lost_race",
    "make_engine",
    "open_store",
    "session_factory",
    "session_scope",
    "upgrade_database",
]


def bins_to_bytes(seconds: Sequence[int]) -> bytes:
    """Packed histogram column: one byte per bin (each 0..60 s)."""
    return bytes(seconds)


def bins_from_bytes(packed: bytes) -> list[int]:
    return list(packed)
