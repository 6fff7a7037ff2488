"""A run's files are fenced like its rows, and a claim's machine is known by more than its host name.

`run_files` records which file of a run's folder is its current checkpoint and which its final weights (name and
SHA-256), written under the owner's claim in the transaction of the epoch's metrics or the final results.
`runs.owner_boot` and `runs.owner_pidns` (the boot id and PID namespace of the claiming launcher) let a machine
tell a process it can see from one it cannot (another boot, another namespace, a clone with the same host name).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("owner_boot", sa.String(64), nullable=True))
        batch.add_column(sa.Column("owner_pidns", sa.String(64), nullable=True))
    op.create_table(
        "run_files",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("role", sa.String(32), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("run_files")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("owner_pidns")
        batch.drop_column("owner_boot")
