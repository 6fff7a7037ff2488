"""Which runs of an expanded spec are done, in flight, or still to run, and whether a run's dependencies let
it start (the one rule every executor follows; pure functions but `judge_dependencies`, which reads them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Collection, Iterable, Mapping

from harness.launch import liveness
from harness.launch.liveness import Verdict
from harness.launch.protocols import RunStore
from harness.spec import PlannedRun
from harness.states import ACTIVE, RunState
from harness.store.records import RunRecord


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
        if status == RunState.COMPLETED:
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



# what a run's dependencies (a teacher, a fine-tune's source) say of it, from best to worst
READY = "ready"  # every one completed: it may start
WAIT = "wait"  # one is alive under an owner (this launch or another): look again later
ORPHANED = "orphaned"  # one has no living owner: reap it, and take it over when it is this launch's to train
BLOCKED = "blocked"  # one failed, was cancelled, or is no launch's to train: the run cannot start
_RANK = {READY: 0, WAIT: 1, ORPHANED: 2, BLOCKED: 3}


@dataclass(frozen=True)
class Readiness:
    state: str
    # the dependency behind any other state than ready, as the store holds it (None: not in the store)
    dep: str | None = None
    record: RunRecord | None = None
    verdict: Verdict | None = None
    # for blocked: the error the run ends with; for wait and orphaned: the liveness evidence
    why: str = ""


def judge_dependencies(store: RunStore, deps: Iterable[str], ours: Collection[str]) -> dict[str, Readiness]:
    """What each dependency in `deps` says of the runs that need it (hash -> Readiness), its record read and its
    liveness judged once for all. `ours` are the runs this launch may train itself (its spec's): one of them
    whose owner is gone, or that was given back, is orphaned rather than blocking."""
    deps = sorted(set(deps))
    records = {r.hash: r for r in store.runs(hashes=deps)} if deps else {}
    verdicts = liveness.judge(records.values())
    return {d: dependency_state(d, records.get(d), verdicts.get(d), d in ours) for d in deps}


def dependency_state(dep: str, record: RunRecord | None, verdict: Verdict | None, ours: bool) -> Readiness:
    """The rule itself, for one dependency: its record, and its liveness verdict when it is active."""
    if record is None:
        return Readiness(BLOCKED, dep, why=f"run {dep[:10]} that this run needs is not in the store")
    status = record.status
    if status == RunState.COMPLETED:
        return Readiness(READY)
    if status in ACTIVE and verdict is not None:
        return Readiness(WAIT if verdict.alive else ORPHANED, dep, record, verdict, verdict.why)
    if status == RunState.PENDING and ours:
        return Readiness(ORPHANED, dep, record, None, "given back by the launch that held it")
    return Readiness(BLOCKED, dep, record, verdict, f"run {dep[:10]} that this run needs is {status}")


def readiness(run: PlannedRun, judged: Mapping[str, Readiness]) -> Readiness:
    """Whether `run` may start: the worst of what its dependencies say (`judged`, from `judge_dependencies`)."""
    worst = Readiness(READY)
    for dep in run.depends_on:
        if _RANK[judged[dep].state] > _RANK[worst.state]:
            worst = judged[dep]
    return worst
