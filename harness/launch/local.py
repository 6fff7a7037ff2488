"""Training claimed runs as local processes (submitit's local executor) or in this process (debug).

At most `max_parallel` run at once, one GPU each where the machine has several. A run waits for the runs it
needs; before each submission the run is read again, so a run cancelled while it waited stays cancelled, and
a submission the store refuses (cancelled that very moment) is stopped at once. Ctrl-C or SIGTERM end every
job this launch started and give back the runs it never submitted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from harness import paths
from harness.launch import processes
from harness.launch.executors import local_gpu_ids, make_local_executor
from harness.launch.interrupts import LaunchInterrupted, children_ignore_ctrl_c, signal_name, signals_held
from harness.launch.job import RunJob
from harness.launch.progress import Watcher
from harness.launch.protocols import RunStore
from harness.launch.queue import stored_job_id
from harness.launch.outcome import Failure, LaunchResult
from harness.spec import PlannedRun
from harness.states import Owner

# seconds between renewals of the claims this launch holds
RENEW_EVERY_S = 30.0


@dataclass
class LocalBatch:
    """What one local launch holds: runs waiting for their turn, and jobs it started."""

    store: RunStore
    owner: Owner
    executor_name: str
    jobs: dict[str, RunJob]
    watch: Watcher
    result: LaunchResult
    pending: list[PlannedRun] = field(default_factory=list)
    running: dict[str, tuple[PlannedRun, Any, processes.ProcessRef | None]] = field(default_factory=dict)
    gpu_of: dict[str, int] = field(default_factory=dict)


def run_locally(executor_name: str, claimed: list[PlannedRun], jobs: dict[str, RunJob], store: RunStore,
                owner: Owner, output: Any, max_parallel: int, poll_s: float,
                progress: Callable[[str], None], result: LaunchResult) -> None:
    executor = make_local_executor(executor_name, paths.log_dir(output))
    # one GPU per run where the machine has GPUs (submitit hides them from a job given none)
    free_gpus = local_gpu_ids() if executor_name == "local" else []
    slots = max(1, min(max_parallel, len(free_gpus)) if free_gpus else max_parallel)
    batch = LocalBatch(store, owner, executor_name, jobs, Watcher(store, progress), result, list(claimed))
    renewed = time.monotonic()
    try:
        while batch.pending or batch.running:
            _start_ready(batch, executor, slots, free_gpus)
            _collect_finished(batch, free_gpus)
            if time.monotonic() - renewed > RENEW_EVERY_S:
                store.renew_leases(owner.token)
                renewed = time.monotonic()
            if batch.running:
                time.sleep(poll_s)
    except KeyboardInterrupt as exc:
        with signals_held():
            lines = _stop_everything(batch)
        raise LaunchInterrupted(signal_name(exc), lines) from None


def _start_ready(batch: LocalBatch, executor: Any, slots: int, free_gpus: list[int]) -> None:
    for run in list(batch.pending):
        if len(batch.running) >= slots:
            return
        problem = _dependency_problem(run, batch.store)
        if problem == "wait":
            continue
        batch.pending.remove(run)
        record = batch.store.get_run(run.hash)
        if record is None or record.status != "queued" or record.owner != batch.owner.token:
            state = record.status if record is not None else "gone"
            batch.watch.event(run, f"not started: it is {state} now" + (f" ({record.error})" if record and
                                                                           record.error else ""))
            continue
        if problem:
            batch.store.finish(run.hash, batch.owner.token, "failed", error=problem)
            batch.result.failures.append(Failure(run, problem, None))
            batch.watch.event(run, f"failed: {problem}")
            continue
        _submit(batch, executor, run, free_gpus)


def _submit(batch: LocalBatch, executor: Any, run: PlannedRun, free_gpus: list[int]) -> None:
    if free_gpus:
        batch.gpu_of[run.hash] = free_gpus.pop(0)
        executor.update_parameters(gpus_per_node=1, visible_gpus=[batch.gpu_of[run.hash]])
    if batch.executor_name == "local":
        # a CPU run of several processes: one local task each (submitit gives them rank and world size)
        executor.update_parameters(tasks_per_node=run.config.processes)
    with children_ignore_ctrl_c():
        job = executor.submit(batch.jobs[run.hash])
    # a local job's id is its controller's pid; an in-process debug job runs in this process
    ref = processes.reference(int(job.job_id)) if batch.executor_name == "local" else processes.this_process()
    pid = ref.pid if ref is not None else int(job.job_id)
    recorded = batch.store.record_submission(run.hash, batch.owner.token, stored_job_id(batch.executor_name, str(pid)),
                                             job_started=ref.started if ref else None, log_path=str(job.paths.stderr))
    batch.result.submitted.append(run.hash)
    if not recorded:  # cancelled between our last look and the submission: the job must not train
        if ref is not None and batch.executor_name == "local":
            processes.stop_tree(ref, grace_s=2.0)
        batch.watch.event(run, "cancelled as it was submitted: its job was stopped")
        return
    batch.watch.event(run, f"submitted (job {job.job_id})", state=("submitted", None))
    if batch.executor_name == "debug":
        _collect(batch, run, job)  # the debug executor trains in this process when asked for the result
        return
    batch.running[run.hash] = (run, job, ref)


def _collect_finished(batch: LocalBatch, free_gpus: list[int]) -> None:
    for run_hash, (run, job, _) in list(batch.running.items()):
        if job.done():
            del batch.running[run_hash]
            if run_hash in batch.gpu_of:
                free_gpus.append(batch.gpu_of.pop(run_hash))
            _collect(batch, run, job)
        else:
            batch.watch.poll(run)


def _dependency_problem(run: PlannedRun, store: RunStore) -> str | None:
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


def _collect(batch: LocalBatch, run: PlannedRun, job: Any) -> None:
    from harness.launch.ending import job_error, record_failure

    error = job_error(job)
    record = batch.store.get_run(run.hash)
    if error is None and record is not None and record.status == "completed":
        batch.watch.completed(run, record)
        return
    cause = record_failure(batch.store, run.hash, batch.owner.token, record, error, str(job.paths.stderr))
    batch.result.failures.append(Failure(run, cause, str(job.paths.stderr)))
    batch.watch.event(run, f"FAILED: {cause.splitlines()[-1] if cause else ''}  (log: {job.paths.stderr})")


def _stop_everything(batch: LocalBatch) -> list[str]:
    """End the jobs this launch started and give back the runs it never submitted; one line per run."""
    lines = []
    for run, job, ref in batch.running.values():
        stopped = processes.stop_tree(ref) if ref is not None and batch.executor_name == "local" else False
        batch.store.finish(run.hash, batch.owner.token, "cancelled", error="the launch was interrupted")
        lines.append(f"{run.short}  cancelled: " + (f"its job (process {ref.pid}) was stopped" if stopped
                                                    else "its job had already ended") + f"  {run.describe()}")
    for run in batch.pending:
        if batch.store.release(run.hash, batch.owner.token):
            lines.append(f"{run.short}  not started: pending again  {run.describe()}")
    return lines

