"""One row per run for `harness status` and the launcher's progress lines: state, epoch, top-1, time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from harness.launch.protocols import RunStore
from harness.store.records import RunRecord


@dataclass(frozen=True)
class RunStatus:
    hash: str
    spec: str | None
    description: str
    status: str
    epoch: int | None
    epochs: int | None
    top1: float | None
    job_id: str | None
    elapsed_s: float | None
    error: str | None
    # where an active run's owner is (a launcher's host, a job's node)
    host: str | None = None
    # seconds a running run still needs, from its own measured epoch time (harness.launch.estimate.remaining)
    remaining_s: float | None = None


def statuses(store: RunStore, spec: str | None = None, now: datetime | None = None) -> list[RunStatus]:
    from harness.launch.estimate import remaining

    now = now or datetime.now(timezone.utc)
    out = []
    for record in store.runs(spec=spec):
        if record.source is not None:
            continue
        out.append(RunStatus(
            hash=record.hash, spec=record.spec, description=describe(record), status=record.status,
            epoch=record.epoch, epochs=(record.config.get("schedule") or {}).get("epochs"),
            top1=latest_top1(store, record), job_id=record.job_id, elapsed_s=elapsed_s(record, now),
            error=record.error, host=record.host or record.owner_host, remaining_s=remaining(store, record),
        ))
    return out


def latest_top1(store: RunStore, record: RunRecord) -> float | None:
    """The run's final top-1, or the top-1 of its latest epoch while it trains."""
    if "top1" in record.final:
        return record.final["top1"]
    if record.epoch is None:
        return None
    for _, epoch, _, value in store.metrics([record.hash], names=["top1"]):
        if epoch == record.epoch:
            return value
    return None


def elapsed_s(record: RunRecord, now: datetime | None = None) -> float | None:
    """Seconds since the run first started: to its end, or to now while it runs."""
    if record.started_at is None:
        return None
    end = record.ended_at or now or datetime.now(timezone.utc)
    return (end - record.started_at).total_seconds()


def describe(record: RunRecord) -> str:
    coords = " ".join(f"{k}={v}" for k, v in (record.coords or {}).items())
    return f"{record.variant} seed={record.seed}" + (f" {coords}" if coords else "") + (
        f" [{record.profile}]" if record.profile else "")


def clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
