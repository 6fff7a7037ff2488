"""The first store schema: experiments, runs, memberships, metrics, final metrics, run info, predictions.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("spec_text", sa.Text, nullable=False),
        sa.Column("spec_path", sa.Text, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.UniqueConstraint("name", name="uq_experiments_name"),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.Column("started_at", TZ, nullable=True),
        sa.Column("ended_at", TZ, nullable=True),
        sa.Column("heartbeat_at", TZ, nullable=True),
        sa.Column("epoch", sa.Integer, nullable=True),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("job_id", sa.String(64), nullable=True),
        sa.Column("log_path", sa.Text, nullable=True),
        sa.UniqueConstraint("hash", name="uq_runs_hash"),
    )
    op.create_index("ix_runs_status", "runs", ["status"])
    op.create_table(
        "run_memberships",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("experiment_id", sa.Integer, sa.ForeignKey("experiments.id", ondelete="CASCADE"), nullable=False),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("profile", sa.String(100), nullable=False),
        sa.Column("variant", sa.String(200), nullable=False),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("coords", sa.JSON, nullable=False),
        sa.Column("seed", sa.Integer, nullable=False),
        sa.UniqueConstraint("experiment_id", "run_id", "profile", name="uq_membership"),
    )
    op.create_index("ix_run_memberships_experiment_id", "run_memberships", ["experiment_id"])
    op.create_index("ix_run_memberships_run_id", "run_memberships", ["run_id"])
    op.create_table(
        "metrics",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("epoch", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("value", sa.Float, nullable=True),
    )
    op.create_table(
        "final_metrics",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("value", sa.Float, nullable=True),
    )
    op.create_table(
        "run_info",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "predictions",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("dtype", sa.String(16), nullable=False),
        sa.Column("shape", sa.JSON, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    for table in ("predictions", "run_info", "final_metrics", "metrics", "run_memberships", "runs", "experiments"):
        op.drop_table(table)
