"""Launch a spec: plan -> claim -> executor -> wait. Check what its runs need, register them, claim what is
not done, and hand the claimed runs to their executor, which submits, waits and stops them.

    entries = prepare(runs, store)                 # done / in flight / to run, writing nothing
    result = launch(loaded, runs, store, db_url, options, progress)

Every run a launch trains is first claimed in the store (harness/states.py), so two launches of one spec,
started together or minutes apart, never train the same run twice: a run alive under another launch is
reported as in flight, and one whose owner died is taken over (with its cause, in one move). Each executor
owns its jobs' life (submit, wait, stop) in one module: locally (harness/launch/local.py, `run_locally`) at
most `max_parallel` runs train at once and a run waits for the runs it needs, taking over one whose owner
died; on SLURM (harness/launch/slurm.py, `run_on_slurm`) the whole graph is submitted at once with `afterok`
dependencies. Both follow plan.py's one rule of whether a run's dependencies let it start.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

from harness import paths
from harness.launch import liveness, preflight, processes, secrets
from harness.launch.estimate import dry_run_estimate
from harness.launch.executors import Claimed, Executor, resolve_executor, threads_per_run
from harness.launch.interrupts import terminate_as_interrupt
from harness.launch.job import RunJob
from harness.launch.local import LocalExecutor
from harness.launch.memory import device_plans
from harness.launch.outcome import LaunchResult
from harness.launch.plan import PlanEntry, dependency_order, format_plan, plan
from harness.launch.protocols import RunStore
from harness.launch.slurm import SlurmConfig, SlurmExecutor
from harness.spec import LoadedSpec, PlannedRun
from harness.states import Owner, RunState
from harness.store import NoStore, open_store
from harness.words import count

Progress = Callable[[str], None]


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
    # MLflow tracking URI each job copies its epochs to as they end (harness.export.live; None: none)
    mlflow: str | None = None


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
    store = existing_store(db_url)
    if store is not None:
        return launch(loaded, runs, store, db_url, options, progress)
    entries = prepare(runs, None)  # every run is to run, as it is in the store created below
    check_files([e.run for e in entries], options.executor)
    Path(options.output).mkdir(parents=True, exist_ok=True)
    return _register_and_submit(loaded, entries, open_store(db_url), db_url, options, progress)


def dry_run(runs: list[PlannedRun], db_url: str, options: LaunchOptions,
            probe: bool = False) -> tuple[str, str, list[str]]:
    """`harness run --dry-run`: the plan (one line per run and a summary), its cost estimate with each GPU run's
    per-device plan on this machine's GPUs, and every problem the real run would stop on (files, weights, the
    executor's commands, a run that cannot fit its GPU); writes nothing."""
    store = existing_store(db_url)
    entries = prepare(runs, store)
    todo = sum(e.state == "to_run" for e in entries)
    plan_text = (f"{format_plan(entries)}\n{count(len(entries), 'run')}: {len(entries) - todo} done or in flight, "
                 f"{todo} to run (dry run: nothing trained)")
    to_run = [e.run for e in entries if e.state == "to_run"]
    problems = preflight.problems(to_run, _executor_named(options.executor), options.output,
                                  [e.run for e in entries if e.state == "done"], store)
    estimate = dry_run_estimate(entries, store, options.executor, options.max_parallel, options.slurm, probe,
                                options.threads)
    per_device, too_big = device_plans(to_run, _executor_named(options.executor), options.max_parallel)
    if per_device:
        estimate += "\n" + "\n".join(per_device)
    return plan_text, estimate, problems + too_big


def existing_store(db_url: str):
    """The store at `db_url`, or None where there is none yet (a missing file, an empty database): nothing is
    created."""
    try:
        return open_store(db_url, create=False)
    except NoStore:
        return None


def check_files(runs: list[PlannedRun], executor: str | None = None, output: Path | None = None,
                completed: list[PlannedRun] | None = None, store: RunStore | None = None) -> None:
    """PreflightError, one line per problem, when runs lack a file, a folder or published weights they can
    trust (or, given the output folder, the weights of a `completed` run they learn from), or the executor a
    command it needs, or when a run cannot fit this machine's GPUs (harness/launch/memory.py)."""
    from harness.launch.memory import device_plans

    problems = preflight.problems(runs, _executor_named(executor), output, completed or [], store)
    problems += device_plans(runs, _executor_named(executor))[1]
    if problems:
        raise PreflightError("\n".join(problems))


def plan_checks(to_run: list[PlannedRun], completed: list[PlannedRun], store: RunStore, options: LaunchOptions) -> None:
    """The checks every launch into an existing store makes before it writes or submits anything, `harness run`
    and `harness retry` alike (PreflightError): the files, folders and published weights `to_run` need, the
    weights of the `completed` runs they learn from, the executor's commands."""
    check_files(to_run, options.executor, options.output, completed, store)


def launch(loaded: LoadedSpec, runs: list[PlannedRun], store: RunStore, db_url: str,
           options: LaunchOptions, progress: Progress = print) -> LaunchResult:
    """Register and train the runs of `loaded` (as expanded by `harness.spec.expand`) that are not done."""
    entries = prepare(runs, store)
    plan_checks([e.run for e in entries if e.state == "to_run"], [e.run for e in entries if e.state == "done"], store,
                options)
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
    return submit_runs(to_run, store, db_url, options, progress, result, ours=[e.run for e in entries])


def submit_runs(runs: list[PlannedRun], store: RunStore, db_url: str, options: LaunchOptions,
                progress: Progress = print, result: LaunchResult | None = None,
                ours: list[PlannedRun] | None = None) -> LaunchResult:
    """Claim registered runs, submit them (dependencies first) and, unless detached, wait for them; `ours`:
    the other runs of their spec, which a local launch trains itself when a run it waits on loses its owner."""
    result = result or LaunchResult([])
    if not runs:
        return result
    executor = resolve_executor(options.executor)
    owner = new_owner()
    claimed = claim_runs(store, dependency_order(runs), owner, result, progress)
    if not claimed:
        return result
    # the cores are split between the runs that train at once, never more than this launch claimed
    make_job = partial(_job, db_url=db_url, token=owner.token, options=options, executor=executor,
                       at_once=min(options.max_parallel, len(claimed)))
    handed = Claimed(claimed, {r.hash: make_job(r) for r in claimed}, store, owner, progress, result,
                     {r.hash: r for r in ours or ()}, make_job)
    with secrets.password_in_environment(db_url), terminate_as_interrupt():
        executor_for(executor, options).run(handed)
    return result


def executor_for(name: str, options: LaunchOptions) -> Executor:
    """The executor named `name` (resolved: local, debug or slurm), set up from the launch's options."""
    if name == "slurm":
        return SlurmExecutor(options.slurm or SlurmConfig(), options.output, options.poll_s, options.detach)
    return LocalExecutor(name, options.output, options.max_parallel, options.poll_s)


def _executor_named(name: str | None) -> str | None:
    """The executor an option names (`auto` resolved); None for a name that is no executor (an error later)."""
    try:
        return None if name is None else resolve_executor(name)
    except ValueError:
        return None


def new_owner() -> Owner:
    me = processes.this_process()
    return Owner(token=uuid.uuid4().hex, host=me.host, pid=me.pid, started=me.started, boot=me.boot,
                 pidns=me.pidns)


def claim_runs(store: RunStore, runs: list[PlannedRun], owner: Owner, result: LaunchResult,
               progress: Progress) -> list[PlannedRun]:
    """Claim each run for `owner`; a run alive under another owner is left to it, a dead one is given up first."""
    records = {r.hash: r for r in store.runs(hashes=[run.hash for run in runs])}
    verdicts = liveness.judge(records.values())
    claimed = []
    for run in runs:
        record = records.get(run.hash)
        if record is not None and record.status == RunState.COMPLETED:
            continue
        verdict = verdicts.get(run.hash)
        if verdict is not None and verdict.alive:
            result.elsewhere.append((run, verdict.why))
            continue
        taken, cause = liveness.take(store, run.hash, record, verdict, owner)
        if taken:
            claimed.append(run)
            if cause:
                progress(f"{run.short}  its last attempt ended: {cause}")
        else:
            result.elsewhere.append((run, "claimed by another launch a moment ago"))
    for run, why in result.elsewhere:
        progress(f"{run.short}  in flight elsewhere ({why}): not submitted again  {run.describe()}")
    return claimed


def _job(run: PlannedRun, db_url: str, token: str, options: LaunchOptions, executor: str, at_once: int) -> RunJob:
    max_requeues = options.slurm.max_requeues if executor == "slurm" and options.slurm is not None else 0
    return RunJob(run.hash, run.config.as_json(), secrets.job_url(db_url), str(options.output), owner=token,
                  max_requeues=max_requeues, threads=threads_per_run(options.threads, executor, at_once),
                  mlflow=options.mlflow)
