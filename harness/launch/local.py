"""Training claimed runs as local processes (submitit's local executor) or in this process (debug).

At most `max_parallel` run at once. Where the machine has GPUs, each run holds its own: the `gpus` its config
asks for (one by default), disjoint from every other run's (CUDA_VISIBLE_DEVICES per job), with one local task
per GPU that train it with DDP; a run waits, in its turn, until that many are free. A run waits for the runs it
needs (harness/launch/plan.py's `readiness`, the rule the SLURM graph follows too): every `poll_s` the loop
sleeps and judges them again, so a dependency whose owner died (another launch killed with its job) is
given up with its cause and, when it is a run of this launch's spec, taken over and trained here first.
Before each submission the run is read again, so a run cancelled while it waited stays cancelled, and a
submission the store refuses (cancelled that very moment) is stopped at once. Ctrl-C or SIGTERM end every
job this launch started and give back the runs it never submitted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from harness import paths
from harness.launch import liveness, processes
from harness.launch.ending import TAKEN_OVER, job_error, record_failure, taken_over
from harness.launch.executors import Claimed, local_gpu_ids, make_local_executor, wait_for_jobs
from harness.launch.interrupts import children_ignore_ctrl_c
from harness.launch.job import RunJob
from harness.launch.progress import Watcher
from harness.launch.protocols import RunStore
from harness.launch.queue import stored_job_id
from harness.launch.outcome import Failure, LaunchResult
from harness.launch.plan import (BLOCKED, ORPHANED, WAIT, Readiness, dependency_order, judge_dependencies,
                                 readiness)
from harness.spec import PlannedRun
from harness.states import Owner, RunState


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
    # the GPUs each running run holds, and how many the machine has (0: none, runs train on CPU)
    gpu_of: dict[str, list[int]] = field(default_factory=dict)
    gpus_total: int = 0
    # the runs of the launch's spec, which it may take over when their owner dies, and their jobs' maker
    ours: dict[str, PlannedRun] = field(default_factory=dict)
    make_job: Callable[[PlannedRun], RunJob] | None = None


@dataclass(frozen=True)
class LocalExecutor:
    """The local executor (`local`: submitit's processes; `debug`: in this process)."""

    name: str
    output: Any
    max_parallel: int = 1
    poll_s: float = 1.0

    def run(self, claimed: Claimed) -> None:
        run_locally(self.name, claimed.runs, claimed.jobs, claimed.store, claimed.owner, self.output,
                    self.max_parallel, self.poll_s, claimed.progress, claimed.result, ours=claimed.ours,
                    make_job=claimed.make_job)


def run_locally(executor_name: str, claimed: list[PlannedRun], jobs: dict[str, RunJob], store: RunStore,
                owner: Owner, output: Any, max_parallel: int, poll_s: float,
                progress: Callable[[str], None], result: LaunchResult, *,
                ours: Mapping[str, PlannedRun] | None = None,
                make_job: Callable[[PlannedRun], RunJob] | None = None) -> None:
    """Train `claimed` (claimed by `owner`, with their `jobs`); `ours` (with `make_job`): the other runs of the
    spec, which this launch trains itself when a run it waits on among them loses its owner."""
    executor = make_local_executor(executor_name, paths.log_dir(output))
    # the machine's GPUs, handed out to runs and given back as they end (submitit hides them from a job given none)
    free_gpus = local_gpu_ids() if executor_name == "local" else []
    slots = max(1, max_parallel)
    batch = LocalBatch(store, owner, executor_name, jobs, Watcher(store, progress), result, list(claimed),
                       gpus_total=len(free_gpus), ours={**(ours or {}), **{r.hash: r for r in claimed}},
                       make_job=make_job)

    def look() -> bool:
        started = _start_ready(batch, executor, slots, free_gpus)
        return _collect_finished(batch, free_gpus) or started

    wait_for_jobs(look, busy=lambda: bool(batch.pending or batch.running),
                  renew=lambda: store.renew_leases(owner.token), stop=lambda: _stop_everything(batch), poll_s=poll_s)


def _start_ready(batch: LocalBatch, executor: Any, slots: int, free_gpus: list[int]) -> bool:
    """Submit the pending runs whose dependencies are done, as slots allow; True when anything changed."""
    if not batch.pending or len(batch.running) >= slots:
        return False
    judged = judge_dependencies(batch.store, (d for r in batch.pending for d in r.depends_on), batch.ours)
    moved = False
    for run in list(batch.pending):
        if len(batch.running) >= slots:
            return moved
        ready = readiness(run, judged)
        if ready.state == WAIT:
            continue
        if ready.state == ORPHANED:
            _adopt(batch, ready)
            return moved  # the others are judged again at the next look, with this dependency's new state
        need = gpus_needed(run, batch.gpus_total)
        if batch.gpus_total and need <= batch.gpus_total and need > len(free_gpus):
            return moved  # it waits for GPUs to be given back, and the runs after it wait behind it
        moved = True
        batch.pending.remove(run)
        record = batch.store.get_run(run.hash)
        if record is None or record.status != RunState.QUEUED or record.owner != batch.owner.token:
            state = record.status if record is not None else "gone"
            batch.watch.event(run, f"not started: it is {state} now" + (f" ({record.error})" if record and
                                                                           record.error else ""))
            continue
        why = ready.why if ready.state == BLOCKED else (
            f"it asks for gpus: {need} and this machine shows {batch.gpus_total}" if need > batch.gpus_total > 0
            else None)
        if why is not None:
            batch.store.finish(run.hash, batch.owner.token, RunState.FAILED, error=why)
            batch.result.failures.append(Failure(run, why, None))
            batch.watch.event(run, f"failed: {why}")
            continue
        _submit(batch, executor, run, free_gpus)
    return moved


def _adopt(batch: LocalBatch, ready: Readiness) -> None:
    """A dependency with no living owner: take it over and train it first when it is a run of this launch's
    spec, else give it up with its cause (the runs that need it then fail, saying so)."""
    assert ready.dep is not None and ready.record is not None
    dep = batch.ours.get(ready.dep)
    if dep is None or batch.make_job is None:
        liveness.reap(batch.store, [ready.record])
        return
    taken, cause = liveness.take(batch.store, dep.hash, ready.record, ready.verdict, batch.owner)
    if not taken:
        return  # another launch took it a moment ago: it is judged again at the next look
    batch.jobs[dep.hash] = batch.make_job(dep)
    batch.pending = dependency_order([dep, *batch.pending])
    batch.result.elsewhere = [(r, why) for r, why in batch.result.elsewhere if r.hash != dep.hash]
    batch.watch.event(dep, "taken over by this launch: " + (f"its last attempt ended: {cause}" if cause
                                                             else ready.why))


def gpus_needed(run: PlannedRun, gpus_total: int) -> int:
    """The local GPUs a run holds: its config's `gpus` on a machine with GPUs, none for a device: cpu run."""
    config = getattr(run, "config", None)  # a test's stand-in run may have none: one GPU, as by default
    if not gpus_total or (config is not None and config.device == "cpu"):
        return 0
    return config.gpus if config is not None else 1


def _submit(batch: LocalBatch, executor: Any, run: PlannedRun, free_gpus: list[int]) -> None:
    if batch.gpus_total:
        need = gpus_needed(run, batch.gpus_total)
        held = batch.gpu_of[run.hash] = free_gpus[:need]
        del free_gpus[:need]
        # set for every job: the executor keeps the last job's parameters, and a CPU run must see no GPU
        executor.update_parameters(gpus_per_node=need, visible_gpus=held)
    if batch.executor_name == "local":
        # one local task per device, which submitit gives rank and world size: each of a GPU run's GPUs (the
        # task of local rank i trains on the i-th of the job's visible GPUs), or a CPU run's processes
        executor.update_parameters(tasks_per_node=run.config.devices)
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
    batch.watch.event(run, f"submitted (job {job.job_id})", state=(RunState.SUBMITTED, None))
    if batch.executor_name == "debug":
        _collect(batch, run, job)  # the debug executor trains in this process when asked for the result
        return
    batch.running[run.hash] = (run, job, ref)


def _collect_finished(batch: LocalBatch, free_gpus: list[int]) -> bool:
    """Record the jobs that ended; True when any did."""
    ended = False
    for run_hash, (run, job, _) in list(batch.running.items()):
        if job.done():
            ended = True
            del batch.running[run_hash]
            if run_hash in batch.gpu_of:
                free_gpus.extend(batch.gpu_of.pop(run_hash))
                free_gpus.sort()
            _collect(batch, run, job)
        else:
            batch.watch.poll(run)
    return ended


def _collect(batch: LocalBatch, run: PlannedRun, job: Any) -> None:
    error = job_error(job)
    record = batch.store.get_run(run.hash)
    if taken_over(record, batch.owner.token):
        batch.result.taken_over.append(run)
        batch.watch.event(run, TAKEN_OVER)
        return
    if error is None and record is not None and record.status == RunState.COMPLETED:
        batch.watch.completed(run, record)
        return
    cause = record_failure(batch.store, run.hash, batch.owner.token, record, error, str(job.paths.stderr))
    batch.result.failures.append(Failure(run, cause, str(job.paths.stderr)))
    stopped = record is not None and record.status == RunState.CANCELLED
    batch.watch.ended(run, RunState.CANCELLED if stopped else RunState.FAILED, cause, str(job.paths.stderr))


def _stop_everything(batch: LocalBatch) -> list[str]:
    """End the jobs this launch started and give back the runs it never submitted; one line per run."""
    lines = []
    for run, job, ref in batch.running.values():
        stopped = processes.stop_tree(ref) if ref is not None and batch.executor_name == "local" else False
        batch.store.finish(run.hash, batch.owner.token, RunState.CANCELLED, error="the launch was interrupted")
        lines.append(f"{run.short}  cancelled: " + (f"its job (process {ref.pid}) was stopped" if stopped and ref
                                                    else "its job had already ended") + f"  {run.describe()}")
    for run in batch.pending:
        if batch.store.release(run.hash, batch.owner.token):
            lines.append(f"{run.short}  not started: pending again  {run.describe()}")
    return lines

