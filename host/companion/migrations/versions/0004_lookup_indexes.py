"""indexes for the team dashboard and the worker export at scale

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25

The team dashboard looks up a team's workers (workers.team_id); a worker's export and erasure
look up their devices (devices.worker_id) and logins (users.worker_id).  With 10,000 wearers each
was a scan of the whole table on every page view (docs/scale.md).
"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (
    ("workers", "ix_workers_team_id", "team_id"),
    ("devices", "ix_devices_worker_id", "worker_id"),
    ("users", "ix_users_worker_id", "worker_id"),
)


def upgrade() -> None:
    for table, name, column in INDEXES:
        op.create_index(name, table, [column], unique=False)


def downgrade() -> None:
    for table, name, _column in INDEXES:
        op.drop_index(name, table_name=table)
