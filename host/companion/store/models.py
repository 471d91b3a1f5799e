"""The companion's tables (SQLAlchemy 2 typed models).

Portable across SQLite and PostgreSQL: only SQLAlchemy types and constructs, no dialect SQL.
Migrations live in ``host/companion/migrations`` (Alembic); change a model → add a revision.

Histogram encoding: a minute summary's histograms are stored as packed bytes, one unsigned byte
per bin (``flexion_bins`` and ``inclination_bins`` 20 bytes, ``lateral_bins`` and
``activity_s`` 5 bytes each; every bin holds 0..60 s, so a byte is exact).  Why bytes rather
than 20 integer columns or JSON: the only consumer is the vectorised exposure code, which
turns a whole day of minutes into an (n, 20) array with one ``numpy.frombuffer`` call; the
encoding is identical on SQLite (BLOB) and PostgreSQL (BYTEA); a row stays ~100 bytes; and
the raw record (``records.payload``) remains the source of truth should a histogram ever need
to be queried in SQL (decode it, or add columns in a migration).  Use
:func:`companion.store.bins_to_bytes` / :func:`companion.store.bins_from_bytes`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Deterministic constraint names: Alembic can then alter them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ROLES = ("worker", "ergonomist", "admin")


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Organisation(Base):
    __tablename__ = "organisations"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)

    teams: Mapped[list[Team]] = relationship(back_populates="organisation")


class Team(Base):
    __tablename__ = "teams"
    __table_args__ = (UniqueConstraint("organisation_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    name: Mapped[str] = mapped_column(String(200))

    organisation: Mapped[Organisation] = relationship(back_populates="teams")
    workers: Mapped[list[Worker]] = relationship(back_populates="team")


class Worker(Base):
    """A person who wears a device.  `timezone` (IANA name) decides where their days begin."""

    __tablename__ = "workers"

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"), index=True)  # the team dashboard
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")

    team: Mapped[Team | None] = relationship(back_populates="workers")
    devices: Mapped[list[Device]] = relationship(back_populates="worker")


class User(Base):
    """A login.  Authentication itself is the API's job; here are only its columns."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint("role IN ('worker', 'ergonomist', 'admin')", name="role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="worker")
    worker_id: Mapped[int | None] = mapped_column(ForeignKey("workers.id"), index=True)
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class TeamMember(Base):
    """Which teams an ergonomist looks after."""

    __tablename__ = "team_members"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"), primary_key=True)


class Device(Base):
    """A provisioned sensor: `device_id` as it reports itself, `key` for HMACs."""

    __tablename__ = "devices"

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64), unique=True)
    key: Mapped[bytes | None] = mapped_column(LargeBinary)
    worker_id: Mapped[int | None] = mapped_column(ForeignKey("workers.id"), index=True)
    last_sync: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    battery_mv: Mapped[int | None] = mapped_column(Integer)
    battery_percent: Mapped[int | None] = mapped_column(SmallInteger)
    # Highest seq up to which every record is stored (or declared lost by a GAP record):
    # what the sync agent ACKs.  None until the first record.
    contiguous_seq: Mapped[int | None] = mapped_column(BigInteger)
    # A revoked device's batches are refused until an admin gives it a new key.
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    worker: Mapped[Worker | None] = relationship(back_populates="devices")


class Record(Base):
    """A raw record exactly as the device framed it (payload validated, CRC checked)."""

    __tablename__ = "records"
    __table_args__ = (UniqueConstraint("device_pk", "seq"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    device_pk: Mapped[int] = mapped_column(ForeignKey("devices.id"))
    seq: Mapped[int] = mapped_column(BigInteger)
    rtype: Mapped[int] = mapped_column(SmallInteger)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    crc: Mapped[int] = mapped_column(BigInteger)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class MinuteSummary(Base):
    """A decoded MINUTE record.  `worker_id` is the device's owner when it was ingested."""

    __tablename__ = "minute_summaries"
    __table_args__ = (
        UniqueConstraint("device_pk", "seq"),
        Index("ix_minute_summaries_worker_start", "worker_id", "start_s"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    device_pk: Mapped[int] = mapped_column(ForeignKey("devices.id"))
    worker_id: Mapped[int | None] = mapped_column(ForeignKey("workers.id"))
    seq: Mapped[int] = mapped_column(BigInteger)
    start_s: Mapped[int] = mapped_column(BigInteger)  # unix seconds, start of the minute
    worn_s: Mapped[int] = mapped_column(SmallInteger)
    flexion_bins: Mapped[bytes] = mapped_column(LargeBinary)  # 20 × u8 seconds
    inclination_bins: Mapped[bytes] = mapped_column(LargeBinary)  # 20 × u8 seconds
    lateral_bins: Mapped[bytes] = mapped_column(LargeBinary)  # 5 × u8 seconds
    activity_s: Mapped[bytes] = mapped_column(LargeBinary)  # 5 × u8 seconds, ACTIVITIES order
    alert_count: Mapped[int] = mapped_column(SmallInteger, default=0)
    longest_bout_s: Mapped[int] = mapped_column(SmallInteger, default=0)
    mean_velocity_ddps: Mapped[int | None] = mapped_column(Integer)
    curvature_mean_ddeg: Mapped[int | None] = mapped_column(SmallInteger)


class Event(Base):
    """A decoded non-minute record: `rtype` is its protocol.RECORD_NAMES name, `fields` the
    dict protocol.decode_payload gives, `time_s` its start_s / time_s (new_s for TIME_SET)."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("device_pk", "seq"),
        Index("ix_events_worker_type_time", "worker_id", "rtype", "time_s"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    device_pk: Mapped[int] = mapped_column(ForeignKey("devices.id"))
    worker_id: Mapped[int | None] = mapped_column(ForeignKey("workers.id"))
    seq: Mapped[int] = mapped_column(BigInteger)
    rtype: Mapped[str] = mapped_column(String(16))
    time_s: Mapped[int] = mapped_column(BigInteger)
    fields: Mapped[dict[str, Any]] = mapped_column(JSON)


class DailyExposure(Base):
    """Derived daily load exposure of one worker-day (local date in the worker's time zone).

    Recomputable at any time from minute_summaries and events; `dirty` marks days whose
    inputs changed since `metrics` was computed."""

    __tablename__ = "daily_exposure"
    __table_args__ = (UniqueConstraint("worker_id", "day"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    worker_id: Mapped[int] = mapped_column(ForeignKey("workers.id"))
    day: Mapped[dt.date] = mapped_column(Date)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    schema_version: Mapped[int] = mapped_column(SmallInteger, default=0)
    dirty: Mapped[bool] = mapped_column(Boolean, default=True)
    computed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


# ---- authentication ------------------------------------------------------------------------------


class ApiToken(Base):
    """A user's bearer / session token.  Only its SHA-256 is stored: a database leak does not
    leak usable tokens (they are 256-bit random, so a plain hash is enough — no slow KDF)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class AgentToken(Base):
    """A sync agent's upload token (POST /api/ingest only); hashed like ApiToken."""

    __tablename__ = "agent_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class LoginFailure(Base):
    """A failed login, kept for the login rate limit (companion.login_limits) and purged once
    older than its window.  `account` is the SHA-256 of the e-mail as typed (lower-cased), so
    mistyped passwords in the e-mail field are not kept readable; `address` the client's."""

    __tablename__ = "login_failures"
    __table_args__ = (
        Index("ix_login_failures_account_at", "account", "at"),
        Index("ix_login_failures_address_at", "address", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


# ---- settings delivered to devices ---------------------------------------------------------------


class DeviceSettings(Base):
    """Config keys (device/lib/config.py SCHEMA names) waiting for a device's next sync.

    `pending_config` is None when nothing is waiting; `confirmed_config_crc` is the config CRC
    the device reported after it applied the last delivery."""

    __tablename__ = "device_settings"

    device_pk: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True)
    pending_config: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    confirmed_config_crc: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    applied_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class WorkerSettings(Base):
    """A worker's alert settings and the limits within which they may change them themselves.

    `values` and `limits` are JSON: values {key: number}, limits {key: [lo, hi]} (API keys, see
    companion.api.devicesettings.WORKER_SETTINGS)."""

    __tablename__ = "worker_settings"

    worker_id: Mapped[int] = mapped_column(ForeignKey("workers.id", ondelete="CASCADE"), primary_key=True)
    values: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    limits: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


# ---- task rotation -------------------------------------------------------------------------------

LOAD_CLASSES = ("low", "medium", "high")
SEGMENT_SOURCES = ("button", "api", "inferred")


class Task(Base):
    """A job task and its expected load class.  `team_id` None: shared by every team."""

    __tablename__ = "tasks"
    __table_args__ = (
        CheckConstraint("load_class IN ('low', 'medium', 'high')", name="load_class"),
        UniqueConstraint("team_id", "name"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"))
    name: Mapped[str] = mapped_column(String(200))
    load_class: Mapped[str] = mapped_column(String(8))


class RotationPolicy(Base):
    """A team's rotation policy (minutes; None = no limit)."""

    __tablename__ = "rotation_policies"

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"), unique=True)
    max_task_min: Mapped[int | None] = mapped_column(Integer)
    max_high_load_min: Mapped[int | None] = mapped_column(Integer)
    min_profile_change_deg: Mapped[float] = mapped_column(Float, default=5.0)


class TaskSegment(Base):
    """A stretch of a worker's day spent on one task (unix seconds, end exclusive)."""

    __tablename__ = "task_segments"
    __table_args__ = (
        CheckConstraint("source IN ('button', 'api', 'inferred')", name="source"),
        CheckConstraint("end_s > start_s", name="positive_length"),
        Index("ix_task_segments_worker_start", "worker_id", "start_s"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    worker_id: Mapped[int] = mapped_column(ForeignKey("workers.id"))
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"))
    start_s: Mapped[int] = mapped_column(BigInteger)
    end_s: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(8))
