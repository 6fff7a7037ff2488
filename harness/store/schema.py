"""The results store's tables, as SQLAlchemy 2.0 ORM classes (the current schema revision).

Alembic migrations under `migrations/versions/` build this schema step by step; a test checks that
the migrated schema equals these classes. Change a table here only together with a new revision.

experiments       one row per spec name: its YAML text and path
runs              one row per run hash: resolved config, status, times, host, error, job, provenance, source
run_memberships   which experiment/profile a run belongs to, as which variant, label, axis coordinates and seed
metrics           per-epoch metrics: (run, epoch, name) -> value, unique
epoch_ends        when each epoch of a run ended (its wall-clock time): (run, epoch) -> ended_at
final_metrics     the final numeric metrics of a run: (run, name) -> value
run_info          final text facts of a run (device, dtype...): (run, key) -> value
predictions       per-head val-set predictions as a compact numpy blob
run_files         which file of a run's folder is its checkpoint, its weights: (run, role) -> name, SHA-256
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# profile of a membership without a profile (NULLs would defeat the unique constraint)
NO_PROFILE = ""


class Base(DeclarativeBase):
    pass


class Experiment(Base):
    __tablename__ = "experiments"
    __table_args__ = (UniqueConstraint("name", name="uq_experiments_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    spec_text: Mapped[str] = mapped_column(Text, default="")
    spec_path: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (UniqueConstraint("hash", name="uq_runs_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hash: Mapped[str] = mapped_column(String(64))
    # jsonb on PostgreSQL: filters on config keys (harness/store/where.py) read its parsed form instead of
    # parsing every run's text again
    config: Mapped[dict[str, Any]] = mapped_column(JSON().with_variant(JSONB(), "postgresql"))
    status: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # epoch reported by the last heartbeat
    epoch: Mapped[int | None] = mapped_column(Integer)
    host: Mapped[str | None] = mapped_column(String(255))
    error: Mapped[str | None] = mapped_column(Text)
    job_id: Mapped[str | None] = mapped_column(String(64))
    log_path: Mapped[str | None] = mapped_column(Text)
    # revision 2: where the code and machine came from (harness.provenance.collect())
    provenance: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # revision 2: the git commit of the harness that ran it, from provenance (indexed for queries)
    git_commit: Mapped[str | None] = mapped_column(String(64), index=True)
    # revision 2: None for runs trained here; a name for results imported from elsewhere
    source: Mapped[str | None] = mapped_column(String(200), index=True)
    # revision 3: the claim on an active run (harness/states.py): the owner's token, written by every
    # launcher and job write that needs to own the run
    owner: Mapped[str | None] = mapped_column(String(64))
    # revision 3: the launcher process that holds the claim: host, pid and process start time (a pid alone
    # may have been reused)
    owner_host: Mapped[str | None] = mapped_column(String(255))
    owner_pid: Mapped[int | None] = mapped_column(Integer)
    owner_started: Mapped[float | None] = mapped_column(Float)
    # revision 6: the machine of that process beyond its host name: boot id and PID namespace (clones of one
    # image, containers and `unshare` share host names; a pid means something only within both)
    owner_boot: Mapped[str | None] = mapped_column(String(64))
    owner_pidns: Mapped[str | None] = mapped_column(String(64))
    # revision 3: the claim lapses after this time unless renewed (by the launcher, then by the job's heartbeat)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # revision 3: start time of a local job's process (with job_id's pid: proves a process is the job's)
    job_started: Mapped[float | None] = mapped_column(Float)
    # revision 3: hashes of the runs this run needs (its teacher, its fine-tuning source)
    depends_on: Mapped[list[str] | None] = mapped_column(JSON)


class RunMembership(Base):
    __tablename__ = "run_memberships"
    __table_args__ = (UniqueConstraint("experiment_id", "run_id", "profile", name="uq_membership"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"), index=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    profile: Mapped[str] = mapped_column(String(100), default=NO_PROFILE)
    variant: Mapped[str] = mapped_column(String(200))
    label: Mapped[str] = mapped_column(Text)
    coords: Mapped[dict[str, Any]] = mapped_column(JSON)
    seed: Mapped[int] = mapped_column(Integer)


class Metric(Base):
    __tablename__ = "metrics"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[float | None] = mapped_column(Float)


class EpochEnd(Base):
    """Revision 7: when the trainer finished each epoch, as the job saw it (not when the store got it: epochs kept
    through a store outage keep their own times), for wall-time axes (MLflow's) and speed over a run."""

    __tablename__ = "epoch_ends"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    ended_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class FinalMetric(Base):
    __tablename__ = "final_metrics"
    # revision 4: filters on a metric (`top1 > 80`) and the check that a metric exists read this index
    __table_args__ = (Index("ix_final_metrics_name_value", "name", "value"),)

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[float | None] = mapped_column(Float)


class RunInfo(Base):
    __tablename__ = "run_info"
    # revision 4: filters on an info key (`info.device == 'cuda'`)
    __table_args__ = (Index("ix_run_info_key_value", "key", "value"),)

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Prediction(Base):
    __tablename__ = "predictions"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    # numpy dtype string of `data` (e.g. int16) and the array's shape as JSON
    dtype: Mapped[str] = mapped_column(String(16))
    shape: Mapped[list[int]] = mapped_column(JSON)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class RunFile(Base):
    """Revision 6: a file of a run's folder published under its owner's claim, fenced like the rows written with
    it; readers (resume, teachers, fine-tune sources) read only this file, and only when its SHA-256 matches."""

    __tablename__ = "run_files"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    # 'checkpoint', 'model' or 'model_ema'
    role: Mapped[str] = mapped_column(String(32), primary_key=True)
    # the file's name in the run's folder (harness.paths.run_dir)
    name: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
