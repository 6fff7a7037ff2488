"""Which runs of an expanded spec are done, in flight, or still to run (pure functions)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from harness.launch.liveness import Verdict
from harness.spec import PlannedRun
from harness.states import ACTIVE


@dataclass(frozen=True)
class PlanEntry:
    run: PlannedRun
    # done (completed), in_flight (alive under another owner), or to_run
    state: str
    # the status the store holds for it (None: never registered)
    stored_status: str | None
    # for an active run: why it counts as alive or dead (harness.launch.liveness)
    why: str | None = None


def plan(runs: Iterable[PlannedRun], statuses: Mapping[str, str],
         verdicts: Mapping[str, Verdict] | None = None) -> list[PlanEntry]:
    """Entries for `runs` from their stored statuses and the liveness verdicts of the active ones."""
    verdicts = verdicts or {}
    entries = []
    for run in runs:
        status = statuses.get(run.hash)
        verdict = verdicts.get(run.hash)
        if status == "completed":
            state = "done"
        elif status in ACTIVE and verdict is not None and verdict.alive:
            state = "in_flight"
        else:
            state = "to_run"
        entries.append(PlanEntry(run, state, status, verdict.why if verdict is not None else None))
    return entries


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
    """One line per run: short hash, variant and axis values, done / in flight (and why) / to run."""
    labels = {"done": "done", "in_flight": "in flight", "to_run": "to run"}
    lines = []
    for e in entries:
        line = f"{e.run.short}  {labels[e.state]:<9}  {e.run.describe()}"
        if e.state == "in_flight" and e.why:
            line += f"  ({e.why})"
        lines.append(line)
    return "\n".join(lines)
