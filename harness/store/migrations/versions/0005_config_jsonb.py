"""PostgreSQL keeps each run's config as `jsonb`: a filter on a config key (`harness/store/where.py`) then reads
the stored binary form instead of parsing every run's JSON text again. SQLite is unchanged.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE runs ALTER COLUMN config TYPE jsonb USING config::jsonb")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE runs ALTER COLUMN config TYPE json USING config::json")
