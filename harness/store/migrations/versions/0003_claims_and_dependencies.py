"""Claims and dependencies: who owns an active run (owner token, process, lease), the job's process start
time, and the runs each run needs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

COLUMNS = {
    "owner": sa.String(64),
    "owner_host": sa.String(255),
    "owner_pid": sa.Integer,
    "owner_started": sa.Float,
    "lease_until": sa.DateTime(timezone=True),
    "job_started": sa.Float,
    "depends_on": sa.JSON,
}


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        for name, kind in COLUMNS.items():
            batch.add_column(sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
