"""Launch a spec: expand it, register its runs, skip what is done, submit the rest, wait.

Runs go to submitit. Locally, at most `max_parallel` run at once and a run that needs
another (a student and its teacher, a fine-tune and its source) is submitted once that
run completed; on SLURM the whole graph is submitted at once with `afterok`
dependencies. While waiting, progress lines report each run's status and epoch.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness import paths
from harness.launch.control import elapsed_s, job_id, kill_job, latest_top1
from harness.launch.executors import local_gpu_ids, make_local_executor, resolve_executor
from harness.launch.job import RunJob
from harness.launch.plan import PlanEntry, dependency_order, plan
from harness.spec import LoadedSpec, PlannedRun

Progress = Callable[[str], None]


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
    # requeues allowed after a time limit or preemption
    max_requeues: int = 3
    # SLURM parameters (harness.launch.slurm.SlurmConfig), when executor is slurm
    slurm: Any = None


@dataclass
class Failure:
    run: PlannedRun
    error: str
    log_path: str | None


@dataclass
class LaunchResult:
    entries: list[PlanEntry]
    submitted: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def prepare(runs: list[PlannedRun], store: Any | None) -> list[PlanEntry]:
    """Plan expanded runs against the store (None: an empty store), registering nothing."""
    if store is None:
        return plan(runs, {})
    from harness.launch.slurm import live_jobs

    records = {r.hash: store.get_run(r.hash) for r in runs}
    statuses = {h: rec.status for h, rec in records.items() if rec is not None}
    # a job still queued on SLURM has no heartbeat yet, but is alive all the same
    live = live_jobs(rec for rec in records.values() if rec is not None)
    now = datetime.now(timezone.utc)
    beats = {h: (now if h in live else rec.heartbeat_at) for h, rec in records.items() if rec is not None}
    return plan(runs, statuses, beats, now)


def launch(loaded: LoadedSpec, runs: list[PlannedRun], store: Any, db_url: str,
           options: LaunchOptions, progress: Progress = print) -> LaunchResult:
    """Register and train the runs of `loaded` (as expanded by `harness.spec.expand`) that are not done."""
    entries = prepare(runs, store)
    store.register_experiment(loaded.spec.name, loaded.text, loaded.path)
    store.register_runs(loaded.spec.name, [e.run for e in entries])
    result = LaunchResult(entries)
    submit_runs([e.run for e in entries if e.state == "to_run"], store, db_url, options, progress, result)
    return result


def submit_runs(runs: list[PlannedRun], store: Any, db_url: str, options: LaunchOptions,
                progress: Progress = print, result: LaunchResult | None = None) -> LaunchResult:
    """Submit registered runs (dependencies first) and, unless detached, wait for them."""
    result = result or LaunchResult([])
    to_run = dependency_order(runs)
    if not to_run:
        return result
    executor = resolve_executor(options.executor)
    jobs = {r.hash: _job(r, db_url, options) for r in to_run}
    if executor == "slurm":
        from harness.launch.slurm import submit_graph

        submit_graph(to_run, jobs, store, options, progress)
        result.submitted = [r.hash for r in to_run]
        if not options.detach:
            _wait_cluster(to_run, store, options, progress, result)
        return result
    _run_locally(executor, to_run, jobs, store, options, progress, result)
    return result


def _job(run: PlannedRun, db_url: str, options: LaunchOptions) -> RunJob:
    return RunJob(run.hash, run.config.as_json(), db_url, str(options.output), max_requeues=options.max_requeues,
                  threads=_threads_per_run(options.max_parallel))


def _threads_per_run(max_parallel: int) -> int:
    # parallel CPU runs split the cores instead of oversubscribing them
    return max(1, (os.cpu_count() or 1) // max(1, max_parallel))


def _run_locally(executor_name: str, to_run: list[PlannedRun], jobs: dict[str, RunJob], store: Any,
                 options: LaunchOptions, progress: Progress, result: LaunchResult) -> None:
    executor = make_local_executor(executor_name, paths.log_dir(options.output))
    # one GPU per run where the machine has GPUs (submitit hides them from a job given none)
    free_gpus = local_gpu_ids() if executor_name == "local" else []
    slots = min(options.max_parallel, len(free_gpus)) if free_gpus else options.max_parallel
    gpu_of: dict[str, int] = {}
    pending = list(to_run)
    running: dict[str, Any] = {}
    watch = _Watcher(store, progress)
    try:
        while pending or running:
            for run in list(pending):
                if len(running) >= max(1, slots):
                    break
                blocked = _dependency_problem(run, store)
                if blocked == "wait":
                    continue
                pending.remove(run)
                if blocked:
                    store.set_status(run.hash, "failed", error=blocked)
                    result.failures.append(Failure(run, blocked, None))
                    watch.event(run, f"failed: {blocked}")
                    continue
                if free_gpus:
                    gpu_of[run.hash] = free_gpus.pop(0)
                    executor.update_parameters(gpus_per_node=1, visible_gpus=[gpu_of[run.hash]])
                job = executor.submit(jobs[run.hash])
                store.set_status(run.hash, "submitted", job_id=job_id(executor_name, str(job.job_id)),
                                 log_path=str(job.paths.stderr))
                result.submitted.append(run.hash)
                watch.event(run, f"submitted (job {job.job_id})", state=("submitted", None))
                if executor_name == "debug":
                    # the debug executor runs the job in this process when asked for its result
                    _collect(run, job, store, result, watch)
                    continue
                running[run.hash] = (run, job)
            for run_hash, (run, job) in list(running.items()):
                if job.done():
                    del running[run_hash]
                    if run_hash in gpu_of:
                        free_gpus.append(gpu_of.pop(run_hash))
                    _collect(run, job, store, result, watch)
                else:
                    watch.poll(run)
            if running:
                time.sleep(options.poll_s)
    except KeyboardInterrupt:
        for run, job in running.values():
            kill_job(job_id(executor_name, str(job.job_id)))
            store.set_status(run.hash, "cancelled", error="launch interrupted by the user")
        raise


def _dependency_problem(run: PlannedRun, store: Any) -> str | None:
    """'wait' while a run this one needs is unfinished; a reason if it can never finish; None when ready."""
    for dep in run.depends_on:
        record = store.get_run(dep)
        status = record.status if record else None
        if status == "completed":
            continue
        if status in ("failed", "cancelled"):
            return f"run {dep[:10]} that this run needs is {status}"
        return "wait"
    return None


def _collect(run: PlannedRun, job: Any, store: Any, result: LaunchResult, watch: "_Watcher") -> None:
    error = None
    try:
        job.result()
    except Exception as exc:  # the job's own exception, re-raised by submitit
        error = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    record = store.get_run(run.hash)
    status = record.status if record else None
    if error is None and status == "completed":
        watch.event(run, "completed" + _top1(record))
        return
    if status not in ("failed", "cancelled"):
        # the job died before it could say so (killed, out of memory)
        error = error or f"job ended with the run still '{status}'"
        store.set_status(run.hash, "failed", error=error)
    else:
        error = (record.error if record and record.error else error) or status
    log_path = str(job.paths.stderr)
    result.failures.append(Failure(run, error, log_path))
    watch.event(run, f"FAILED: {error.splitlines()[-1] if error else ''}  (log: {log_path})")


def _wait_cluster(to_run: list[PlannedRun], store: Any, options: LaunchOptions, progress: Progress,
                  result: LaunchResult) -> None:
    from harness.launch.slurm import reconcile

    watch = _Watcher(store, progress)
    left = {r.hash: r for r in to_run}
    while left:
        # a job SLURM ended without a word from it (cancelled, failed dependency, lost node) ends its run
        reconcile(store, [r for r in (store.get_run(h) for h in left) if r is not None])
        for run_hash, run in list(left.items()):
            record = store.get_run(run_hash)
            if record and record.status in ("completed", "failed", "cancelled"):
                del left[run_hash]
                if record.status == "completed":
                    watch.event(run, "completed" + _top1(record))
                else:
                    result.failures.append(Failure(run, record.error or record.status, record.log_path))
                    watch.event(run, f"{record.status.upper()}: {record.error or ''} (log: {record.log_path})")
            else:
                watch.poll(run)
        if left:
            time.sleep(options.poll_s)


def _top1(record: Any) -> str:
    top1 = record.final.get("top1") if record else None
    return f", top-1 {top1:.1f}%" if top1 is not None else ""


class _Watcher:
    """Prints a line whenever a run's status or epoch changes."""

    def __init__(self, store: Any, progress: Progress):
        self.store = store
        self.progress = progress
        self.start = time.monotonic()
        self.seen: dict[str, tuple[Any, ...]] = {}

    def event(self, run: PlannedRun, what: str, state: tuple[Any, ...] | None = None) -> None:
        if state is not None:
            self.seen[run.hash] = state
        self.progress(f"{self._clock()}  {run.short}  {what:<28}  {run.describe()}")

    def poll(self, run: PlannedRun) -> None:
        record = self.store.get_run(run.hash)
        if record is None:
            return
        state = (record.status, record.epoch)
        if self.seen.get(run.hash) == state:
            return
        self.seen[run.hash] = state
        epochs = run.config.schedule.epochs
        where = f"{record.status}" + (f" epoch {record.epoch + 1}/{epochs}" if record.epoch is not None else "")
        seconds = elapsed_s(record)
        if seconds is not None:
            where += f" ({int(seconds) // 60}m{int(seconds) % 60:02d}s)"
        top1 = latest_top1(self.store, record)
        self.event(run, where + (f" top-1 {top1:.1f}%" if top1 is not None else ""))

    def _clock(self) -> str:
        s = int(time.monotonic() - self.start)
        return f"[{s // 60:02d}:{s % 60:02d}]"
