"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-24

Organisations, teams, workers, users, devices; raw records, minute summaries, events;
derived daily exposure.  See companion/store/models.py for what each column means.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "organisations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organisations")),
        sa.UniqueConstraint("name", name=op.f("uq_organisations_name")),
    )
    op.create_table(
        "teams",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("organisation_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["organisation_id"], ["organisations.id"], name=op.f("fk_teams_organisation_id_organisations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_teams")),
        sa.UniqueConstraint("organisation_id", "name", name=op.f("uq_teams_organisation_id_name")),
    )
    op.create_table(
        "workers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("timezone", sa.String(length=64), server_default="UTC", nullable=False),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"], name=op.f("fk_workers_team_id_teams")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workers")),
    )
    op.create_table(
        "daily_exposure",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=True),
        sa.Column("schema_version", sa.SmallInteger(), nullable=False),
        sa.Column("dirty", sa.Boolean(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["worker_id"], ["workers.id"], name=op.f("fk_daily_exposure_worker_id_workers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_daily_exposure")),
        sa.UniqueConstraint("worker_id", "day", name=op.f("uq_daily_exposure_worker_id_day")),
    )
    op.create_table(
        "devices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=True),
        sa.Column("worker_id", sa.Integer(), nullable=True),
        sa.Column("last_sync", sa.DateTime(timezone=True), nullable=True),
        sa.Column("battery_mv", sa.Integer(), nullable=True),
        sa.Column("battery_percent", sa.SmallInteger(), nullable=True),
        sa.Column("contiguous_seq", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["worker_id"], ["workers.id"], name=op.f("fk_devices_worker_id_workers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
        sa.UniqueConstraint("device_id", name=op.f("uq_devices_device_id")),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("worker_id", sa.Integer(), nullable=True),
        sa.Column("organisation_id", sa.Integer(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("role IN ('worker', 'ergonomist', 'admin')", name=op.f("ck_users_role")),
        sa.ForeignKeyConstraint(
            ["organisation_id"], ["organisations.id"], name=op.f("fk_users_organisation_id_organisations")
        ),
        sa.ForeignKeyConstraint(["worker_id"], ["workers.id"], name=op.f("fk_users_worker_id_workers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("device_pk", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.Integer(), nullable=True),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("rtype", sa.String(length=16), nullable=False),
        sa.Column("time_s", sa.BigInteger(), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["device_pk"], ["devices.id"], name=op.f("fk_events_device_pk_devices")),
        sa.ForeignKeyConstraint(["worker_id"], ["workers.id"], name=op.f("fk_events_worker_id_workers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("device_pk", "seq", name=op.f("uq_events_device_pk_seq")),
    )
    op.create_index("ix_events_worker_type_time", "events", ["worker_id", "rtype", "time_s"], unique=False)

    op.create_table(
        "minute_summaries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("device_pk", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.Integer(), nullable=True),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("start_s", sa.BigInteger(), nullable=False),
        sa.Column("worn_s", sa.SmallInteger(), nullable=False),
        sa.Column("flexion_bins", sa.LargeBinary(), nullable=False),
        sa.Column("inclination_bins", sa.LargeBinary(), nullable=False),
        sa.Column("lateral_bins", sa.LargeBinary(), nullable=False),
        sa.Column("activity_s", sa.LargeBinary(), nullable=False),
        sa.Column("alert_count", sa.SmallInteger(), nullable=False),
        sa.Column("longest_bout_s", sa.SmallInteger(), nullable=False),
        sa.Column("mean_velocity_ddps", sa.Integer(), nullable=True),
        sa.Column("curvature_mean_ddeg", sa.SmallInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_pk"], ["devices.id"], name=op.f("fk_minute_summaries_device_pk_devices")
        ),
        sa.ForeignKeyConstraint(
            ["worker_id"], ["workers.id"], name=op.f("fk_minute_summaries_worker_id_workers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_minute_summaries")),
        sa.UniqueConstraint("device_pk", "seq", name=op.f("uq_minute_summaries_device_pk_seq")),
    )
    op.create_index(
        "ix_minute_summaries_worker_start", "minute_summaries", ["worker_id", "start_s"], unique=False
    )

    op.create_table(
        "records",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("device_pk", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("rtype", sa.SmallInteger(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("crc", sa.BigInteger(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["device_pk"], ["devices.id"], name=op.f("fk_records_device_pk_devices")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_records")),
        sa.UniqueConstraint("device_pk", "seq", name=op.f("uq_records_device_pk_seq")),
    )
    op.create_table(
        "team_members",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"], name=op.f("fk_team_members_team_id_teams")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_team_members_user_id_users")),
        sa.PrimaryKeyConstraint("user_id", "team_id", name=op.f("pk_team_members")),
    )


def downgrade() -> None:
    op.drop_table("team_members")
    op.drop_table("records")
    op.drop_index("ix_minute_summaries_worker_start", table_name="minute_summaries")

    op.drop_table("minute_summaries")
    op.drop_index("ix_events_worker_type_time", table_name="events")

    op.drop_table("events")
    op.drop_table("users")
    op.drop_table("devices")
    op.drop_table("daily_exposure")
    op.drop_table("workers")
    op.drop_table("teams")
    op.drop_table("organisations")
