"""Claims and dependencies: who owns an active run (owner token, process, lease), the job's process start
time, and the runs each run needs.

Also: `model.dropout` now means the reference code's dropout (after the position embedding, the attention
projection and the MLP layers). Before, under timm 1.x, it only dropped the classifier's input, so a
completed run with dropout trained another model than its config says: it is marked failed, with that
reason, and the next `harness run` trains it again.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

COLUMNS: dict[str, Any] = {
    "owner": sa.String(64),
    "owner_host": sa.String(255),
    "owner_pid": sa.Integer,
    "owner_started": sa.Float,
    "lease_until": sa.DateTime(timezone=True),
    "job_started": sa.Float,
    "depends_on": sa.JSON,
}


OLD_DROPOUT = ("trained before model.dropout meant the reference's dropout (it was head-only dropout under "
               "timm 1.x): train it again")


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        for name, kind in COLUMNS.items():
            batch.add_column(sa.Column(name, kind, nullable=True))
    runs = sa.table("runs", sa.column("id"), sa.column("config", sa.JSON), sa.column("status"),
                    sa.column("source"), sa.column("error"))
    conn = op.get_bind()
    completed = conn.execute(sa.select(runs.c.id, runs.c.config)
                             .where(runs.c.status == "completed", runs.c.source.is_(None))).all()
    stale = [run_id for run_id, config in completed if ((config or {}).get("model") or {}).get("dropout", 0) > 0]
    if stale:
        conn.execute(runs.update().where(runs.c.id.in_(stale)).values(status="failed", error=OLD_DROPOUT))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
