"""Launch a spec: check what its runs need, register them, claim what is not done, submit, wait.

    entries = prepare(runs, store)                 # done / in flight / to run, writing nothing
    result = launch(loaded, runs, store, db_url, options, progress)

Every run a launch trains is first claimed in the store (harness/states.py), so two launches of one spec,
started together or minutes apart, never train the same run twice: a run alive under another launch is
reported as in flight, and one whose owner died is given up (with its cause) and claimed again. Locally, at
most `max_parallel` runs train at once and a run waits for the runs it needs (harness/launch/local.py); on
SLURM the whole graph is submitted at once with `afterok` dependencies (harness/launch/slurm.py).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from harness import paths
from harness.launch import liveness, preflight, processes, secrets
from harness.launch.executors import resolve_executor, threads_per_run
from harness.words import count
from harness.launch.interrupts import LaunchInterrupted, signal_name, signals_held, terminate_as_interrupt
from harness.launch.job import RunJob
from harness.launch.local import run_locally
from harness.launch.outcome import Failure, LaunchResult
from harness.launch.plan import PlanEntry, dependency_order, plan
from harness.launch.progress import Watcher
from harness.launch.protocols import RunStore
from harness.launch.queue import slurm_job_id
from harness.launch.slurm import SlurmConfig, cancel_jobs, submit_graph
from harness.spec import LoadedSpec, PlannedRun
from harness.states import ACTIVE, FINISHED, Owner

Progress = Callable[[str], None]
# seconds between two checks, while waiting on SLURM, that every job is still alive
REAP_EVERY_S = 15.0


class PreflightError(ValueError):
    """Runs need files that are not there; the message has one line per problem."""


@dataclass(frozen=True)
class LaunchOptions:
    # auto, local, debug or slurm
    executor: str = "local"
    # runs trained at the same time by the local executor
    max_parallel: int = 1
    # output folder for checkpoints and logs
    output: Path = Path(paths.DEFAULT_OUTPUT)
    # seconds between progress polls
    poll_s: float = 1.0
    # return right after submitting (cluster executors)
    detach: bool = False
    # SLURM parameters (its max_requeues is the requeue limit of every job)
    slurm: SlurmConfig | None = None
    # torch CPU threads per local run (None: OMP_NUM_THREADS when it is set, else the cores split between runs)
    threads: int | None = None


def prepare(runs: list[PlannedRun], store: RunStore | None) -> list[PlanEntry]:
    """Plan expanded runs against the store (None: an empty store), writing nothing."""
    if store is None:
        return plan(runs, {})
    records = store.runs(hashes=[r.hash for r in runs])
    return plan(runs, {r.hash: r.status for r in records}, liveness.judge(records))


def launch_spec(loaded: LoadedSpec, runs: list[PlannedRun], db_url: str, options: LaunchOptions,
                progress: Progress = print) -> LaunchResult:
    """`harness run`: like `launch`, but a store or output folder that does not exist yet is created only once
    the runs to train are known to have every file they need."""
    from harness.store import open_store

    store = existing_store(db_url)
    if store is not None:
        return launch(loaded, runs, store, db_url, options, progress)
    entries = prepare(runs, None)  # every run is to run, as it is in the store created below
    check_files([e.run for e in entries], options.executor)
    Path(options.output).mkdir(parents=True, exist_ok=True)
    return _register_and_submit(loaded, entries, open_store(db_url), db_url, options, progress)


def dry_run(runs: list[PlannedRun], db_url: str, options: LaunchOptions,
            probe: bool = False) -> tuple[str, str, list[str]]:
    """`harness run --dry-run`: the plan (one line per run and a summary), its cost estimate, and every problem
    the real run would stop on (files, weights, the executor's commands); writes nothing."""
    from harness.launch.estimate import dry_run_estimate
    from harness.launch.plan import format_plan

    store = existing_store(db_url)
    entries = prepare(runs, store)
    todo = sum(e.state == "to_run" for e in entries)
    plan_text = (f"{format_plan(entries)}\n{count(len(entries), 'run')}: {len(entries) - todo} done or in flight, "
                 f"{todo} to run (dry run: nothing trained)")
    to_run = [e.run for e in entries if e.state == "to_run"]
    problems = preflight.problems(to_run, _executor_named(options.executor))
    estimate = dry_run_estimate(entries, store, options.executor, options.max_parallel, options.slurm, probe,
                                options.threads)
    return plan_text, estimate, problems


def existing_store(db_url: str):  # type: ignore[no-untyped-def]
    """The store at `db_url`, or None where there is none yet (a missing file, an empty database): nothing is
    created."""
    from harness.store import NoStore, open_store

    try:
        return open_store(db_url, create=False)
    except NoStore:
        return None


def check_files(runs: list[PlannedRun], executor: str | None = None) -> None:
    """PreflightError, one line per problem, when runs lack a file, a folder or published weights, or the
    executor a command it needs."""
    problems = preflight.problems(runs, _executor_named(executor))
    if problems:
        raise PreflightError("\n".join(problems))


def launch(loaded: LoadedSpec, runs: list[PlannedRun], store: RunStore, db_url: str,
           options: LaunchOptions, progress: Progress = print) -> LaunchResult:
    """Register and train the runs of `loaded` (as expanded by `harness.spec.expand`) that are not done."""
    entries = prepare(runs, store)
    check_files([e.run for e in entries if e.state == "to_run"], options.executor)
    return _register_and_submit(loaded, entries, store, db_url, options, progress)


def _register_and_submit(loaded: LoadedSpec, entries: list[PlanEntry], store: RunStore, db_url: str,
                         options: LaunchOptions, progress: Progress) -> LaunchResult:
    to_run = [e.run for e in entries if e.state == "to_run"]
    store.register_experiment(loaded.spec.name, loaded.text, loaded.path)
    store.register_runs(loaded.spec.name, [e.run for e in entries])
    result = LaunchResult(entries)
    for entry in entries:
        if entry.state == "in_flight":
            result.elsewhere.append((entry.run, entry.why or "alive under another launch"))
    return submit_runs(to_run, store, db_url, options, progress, result)


def submit_runs(runs: list[PlannedRun], store: RunStore, db_url: str, options: LaunchOptions,
                progress: Progress = print, result: LaunchResult | None = None) -> LaunchResult:
    """Claim registered runs, submit them (dependencies first) and, unless detached, wait for them."""
    result = result or LaunchResult([])
    if not runs:
        return result
    executor = resolve_executor(options.executor)
    owner = new_owner()
    claimed = claim_runs(store, dependency_order(runs), owner, result, progress)
    if not claimed:
        return result
    jobs = {r.hash: _job(r, db_url, owner.token, options, executor) for r in claimed}
    with secrets.password_in_environment(db_url), terminate_as_interrupt():
        if executor == "slurm":
            _run_on_slurm(claimed, jobs, store, owner, options, progress, result)
        else:
            run_locally(executor, claimed, jobs, store, owner, options.output, options.max_parallel,
                        options.poll_s, progress, result)
    return result


def _executor_named(name: str | None) -> str | None:
    """The executor an option names (`auto` resolved); None for a name that is no executor (an error later)."""
    try:
        return None if name is None else resolve_executor(name)
    except ValueError:
        return None


def new_owner() -> Owner:
    me = processes.this_process()
    return Owner(token=uuid.uuid4().hex, host=me.host, pid=me.pid, started=me.started)


def claim_runs(store: RunStore, runs: list[PlannedRun], owner: Owner, result: LaunchResult,
               progress: Progress) -> list[PlannedRun]:
    """Claim each run for `owner`; a run alive under another owner is left to it, a dead one is given up first."""
    records = {r.hash: r for r in store.runs(hashes=[run.hash for run in runs])}
    verdicts = liveness.judge(records.values())
    claimed = []
    for run in runs:
        record = records.get(run.hash)
        if record is not None and record.status == "completed":
            continue
        if record is not None and record.status in ACTIVE:
            verdict = verdicts[run.hash]
            if verdict.alive:
                result.elsewhere.append((run, verdict.why))
                continue
            cause = liveness.cause_of_death(record, verdict)
            if store.give_up(run.hash, record.owner, cause, status=verdict.end):
                progress(f"{run.short}  its last attempt ended: {cause}")
        if store.claim(run.hash, owner):
            claimed.append(run)
        else:
            result.elsewhere.append((run, "claimed by another launch a moment ago"))
    for run, why in result.elsewhere:
        progress(f"{run.short}  in flight elsewhere ({why}): not submitted again  {run.describe()}")
    return claimed


def _job(run: PlannedRun, db_url: str, token: str, options: LaunchOptions, executor: str) -> RunJob:
    max_requeues = options.slurm.max_requeues if executor == "slurm" and options.slurm is not None else 0
    return RunJob(run.hash, run.config.as_json(), secrets.job_url(db_url), str(options.output), owner=token,
                  max_requeues=max_requeues, threads=threads_per_run(options.threads, executor, options.max_parallel))


def _run_on_slurm(claimed: list[PlannedRun], jobs: dict[str, RunJob], store: RunStore, owner: Owner,
                  options: LaunchOptions, progress: Progress, result: LaunchResult) -> None:
    config = options.slurm or SlurmConfig()
    submitted = submit_graph(claimed, jobs, store, owner.token, config, options.output, progress)
    result.submitted.extend(r.hash for r in claimed if r.hash in submitted)
    if options.detach:
        return
    try:
        _wait_cluster([r for r in claimed if r.hash in submitted], store, owner, options, progress, result)
    except KeyboardInterrupt as exc:
        with signals_held():
            lines = _cancel_cluster_runs([r for r in claimed if r.hash in submitted], store)
        raise LaunchInterrupted(signal_name(exc), lines) from None


def _wait_cluster(to_wait: list[PlannedRun], store: RunStore, owner: Owner, options: LaunchOptions,
                  progress: Progress, result: LaunchResult) -> None:
    watch = Watcher(store, progress)
    left = {r.hash: r for r in to_wait}
    checked = time.monotonic()
    while left:
        if time.monotonic() - checked > REAP_EVERY_S:
            # a job SLURM ended without a word from it (cancelled, failed dependency, lost node) ends its run
            liveness.reap(store, store.runs(hashes=list(left)))
            store.renew_leases(owner.token)
            checked = time.monotonic()
        for record in store.runs(hashes=list(left)):
            run = left[record.hash]
            if record.status not in FINISHED:
                watch.poll(run, record)
                continue
            del left[record.hash]
            if record.status == "completed":
                watch.completed(run, record)
            else:
                result.failures.append(Failure(run, record.error or record.status, record.log_path))
                watch.ended(run, record.status, record.error, record.log_path)
        if left:
            time.sleep(options.poll_s)


def _cancel_cluster_runs(runs: list[PlannedRun], store: RunStore) -> list[str]:
    lines = []
    records = store.runs(hashes=[r.hash for r in runs])
    unfinished = [r for r in records if r.status not in FINISHED]
    cancel_jobs(j for r in unfinished if (j := slurm_job_id(r.job_id)))
    by_hash = {r.hash: r for r in runs}
    for record in unfinished:
        store.cancel(record.hash, "the launch was interrupted")
        run = by_hash[record.hash]
        lines.append(f"{run.short}  cancelled: SLURM job {slurm_job_id(record.job_id)} scancelled  {run.describe()}")
    return lines
