"""Plain, frozen records that leave the store (never ORM rows)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from harness.config import short_hash
from harness.states import FINISHED, STATUSES  # noqa: F401  (re-exported: the store's callers read them here)


@dataclass(frozen=True)
class RunRecord:
    hash: str
    spec: str | None
    variant: str | None
    label: str | None
    coords: dict[str, Any]
    seed: int | None
    profile: str | None
    status: str
    config: dict[str, Any]
    final: dict[str, float]
    info: dict[str, str]
    # latest epoch logged (or reported by a heartbeat); None before the first
    epoch: int | None
    started_at: datetime | None
    ended_at: datetime | None
    heartbeat_at: datetime | None
    host: str | None
    error: str | None
    job_id: str | None
    log_path: str | None
    # None for runs trained by this harness; the source's name for imported results
    source: str | None = None
    created_at: datetime | None = None
    # harness.provenance.collect() of the process that trained it
    provenance: dict[str, Any] = field(default_factory=dict)
    # the claim on an active run (harness/states.py): owner token, launcher process, lease
    owner: str | None = None
    owner_host: str | None = None
    owner_pid: int | None = None
    owner_started: float | None = None
    # the owner's machine beyond its host name (harness.launch.processes.Machine): boot id, PID namespace
    owner_boot: str | None = None
    owner_pidns: str | None = None
    lease_until: datetime | None = None
    # start time of a local job's process, which with the pid in job_id proves a process is the job's
    job_started: float | None = None
    # hashes of the runs this run needs
    depends_on: tuple[str, ...] = ()

    @property
    def short(self) -> str:
        return short_hash(self.hash)


@dataclass(frozen=True)
class FileRecord:
    """A file a run's owner published: its name in the run's folder and its SHA-256."""

    name: str
    sha256: str


@dataclass(frozen=True)
class RunTable:
    """Runs as `Store.run_table` reads them for a DataFrame: raw rows, decoded by `harness.results` in bulk.

    rows: (id, hash, spec, variant, label, profile, seed, status, source, epoch, last logged epoch, host,
    started_at, ended_at, error, coords JSON text, then one JSON text per top-level config key in `sections`, None
    where the run's config lacks it), one per run in registration order; finals and info: run id -> a JSON object
    of its final metrics (name -> value) and of its info (key -> value), for the runs that have any."""

    rows: list[tuple[Any, ...]]
    sections: list[str]
    finals: dict[int, str]
    info: dict[int, str]


@dataclass(frozen=True)
class ExperimentRecord:
    name: str
    spec_text: str
    spec_path: str
    created_at: datetime | None
    updated_at: datetime | None
