"""Indexes for filters evaluated in the database (harness/store/where.py): final metrics and info by name and
value, so `top1 > 80` reads the index instead of every run's metrics, and a key's existence is one lookup.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_final_metrics_name_value", "final_metrics", ["name", "value"])
    op.create_index("ix_run_info_key_value", "run_info", ["key", "value"])


def downgrade() -> None:
    op.drop_index("ix_run_info_key_value", table_name="run_info")
    op.drop_index("ix_final_metrics_name_value", table_name="final_metrics")
