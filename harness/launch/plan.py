"""Which runs of an expanded spec are done, in flight, or still to run (pure functions)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable, Mapping

from harness.spec import PlannedRun

ACTIVE = ("submitted", "running", "requeued")
# a job writes a heartbeat every HEARTBEAT_S seconds; one silent for this long is presumed dead
STALE_AFTER = timedelta(minutes=5)


@dataclass(frozen=True)
class PlanEntry:
    run: PlannedRun
    # done (completed), in_flight (another launch's live job), or to_run
    state: str
    # the status the store holds for it (None: never registered)
    stored_status: str | None


def plan(runs: Iterable[PlannedRun], statuses: Mapping[str, str],
         heartbeats: Mapping[str, datetime | None] | None = None,
         now: datetime | None = None) -> list[PlanEntry]:
    now = now or datetime.now(timezone.utc)
    heartbeats = heartbeats or {}
    entries = []
    for run in runs:
        status = statuses.get(run.hash)
        if status == "completed":
            state = "done"
        elif status in ACTIVE and _alive(heartbeats.get(run.hash), now):
            state = "in_flight"
        else:
            state = "to_run"
        entries.append(PlanEntry(run, state, status))
    return entries


def as_utc(moment: datetime) -> datetime:
    """A stored time as an aware UTC datetime (SQLite hands back naive ones)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def _alive(beat: datetime | None, now: datetime) -> bool:
    return beat is not None and now - as_utc(beat) < STALE_AFTER


def dependency_order(runs: Iterable[PlannedRun]) -> list[PlannedRun]:
    """Runs ordered so that every run comes after the runs it depends on (stable otherwise)."""
    runs = list(runs)
    by_hash = {r.hash: r for r in runs}
    ordered: list[PlannedRun] = []
    seen: set[str] = set()

    def visit(run: PlannedRun) -> None:
        if run.hash in seen:
            return
        seen.add(run.hash)
        for dep in run.depends_on:
            if dep in by_hash:
                visit(by_hash[dep])
        ordered.append(run)

    for run in runs:
        visit(run)
    return ordered


def format_plan(entries: Iterable[PlanEntry]) -> str:
    """One line per run: short hash, variant and axis values, done / to run."""
    labels = {"done": "done", "in_flight": "in flight", "to_run": "to run"}
    lines = [f"{e.run.short}  {labels[e.state]:<9}  {e.run.describe()}" for e in entries]
    return "\n".join(lines)
