"""Provenance and source of each run; the run_summary, run_metrics and run_final_metrics views.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

VIEWS = {
    # one row per (run, experiment, profile): who, what, where, and the headline numbers
    "run_summary": """
        SELECT r.hash AS hash, e.name AS spec, NULLIF(m.profile, '') AS profile, m.variant AS variant,
               m.label AS label, m.seed AS seed, r.status AS status, r.source AS source,
               r.created_at AS created_at, r.started_at AS started_at, r.ended_at AS ended_at,
               r.heartbeat_at AS heartbeat_at, r.host AS host, r.job_id AS job_id, r.error AS error,
               r.git_commit AS git_commit,
               (SELECT MAX(x.epoch) FROM metrics x WHERE x.run_id = r.id) AS last_epoch,
               (SELECT f.value FROM final_metrics f WHERE f.run_id = r.id AND f.name = 'top1') AS top1,
               (SELECT f.value FROM final_metrics f WHERE f.run_id = r.id AND f.name = 'top5') AS top5
        FROM runs r
        JOIN run_memberships m ON m.run_id = r.id
        JOIN experiments e ON e.id = m.experiment_id
    """,
    # per-epoch metrics by run hash (tidy)
    "run_metrics": """
        SELECT r.hash AS hash, x.epoch AS epoch, x.name AS name, x.value AS value
        FROM metrics x JOIN runs r ON r.id = x.run_id
    """,
    # final metrics by run hash (tidy)
    "run_final_metrics": """
        SELECT r.hash AS hash, f.name AS name, f.value AS value
        FROM final_metrics f JOIN runs r ON r.id = f.run_id
    """,
}


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("provenance", sa.JSON, nullable=True))
        batch.add_column(sa.Column("git_commit", sa.String(64), nullable=True))
        batch.add_column(sa.Column("source", sa.String(200), nullable=True))
        batch.create_index("ix_runs_git_commit", ["git_commit"])
        batch.create_index("ix_runs_source", ["source"])
    for name, body in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {body}")


def downgrade() -> None:
    for name in VIEWS:
        op.execute(f"DROP VIEW {name}")
    with op.batch_alter_table("runs") as batch:
        batch.drop_index("ix_runs_source")
        batch.drop_index("ix_runs_git_commit")
        batch.drop_column("source")
        batch.drop_column("git_commit")
        batch.drop_column("provenance")
