"""Plain, frozen records that leave the store (never ORM rows)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

STATUSES = ("pending", "submitted", "running", "completed", "failed", "cancelled", "requeued")
# statuses after which a run does no more work
FINISHED = ("completed", "failed", "cancelled")


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

    @property
    def short(self) -> str:
        from harness.config import short_hash

        return short_hash(self.hash)


@dataclass(frozen=True)
class ExperimentRecord:
    name: str
    spec_text: str
    spec_path: str
    created_at: datetime
    updated_at: datetime
