"""SLURM through submitit: job parameters, a run graph as job arrays with `afterok` dependencies, requeues.

The launcher hands `submit_graph` the runs to train (in dependency order) and their job callables.
Independent runs go out as one job array (at most `array_parallelism` running at once); a run that needs
another run of the same launch (a student and its teacher, a fine-tune and its source) is submitted at the
same time with `--dependency=afterok:<job>`, so SLURM orders the graph and nothing waits in the launcher.
A job that reaches its time limit or is preempted is checkpointed by submitit (its callable is a
`submitit.helpers.Checkpointable`), requeued, and resumes from the run's last checkpoint, at most
`max_requeues` times. `run_on_slurm` is the executor's whole life for a launch: submit the graph, wait for
it in the executors' one wait loop (`executors.wait_for_jobs`, reaping what SLURM ended without a word),
scancel what is unfinished on Ctrl-C. What SLURM says of the jobs is read by `harness.launch.queue`.
"""

from __future__ import annotations

import subprocess
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import submitit
from pydantic import BaseModel, ConfigDict, Field

from harness import paths
from harness.launch import liveness
from harness.launch.ending import TAKEN_OVER, taken_over
from harness.launch.executors import Claimed, wait_for_jobs
from harness.launch.outcome import Failure, LaunchResult
from harness.launch.plan import ORPHANED, READY, WAIT, judge_dependencies
from harness.launch.progress import Watcher
from harness.launch.protocols import RunStore
from harness.launch.queue import slurm_job_id, stored_job_id
from harness.states import FINISHED, Owner, RunState, renew_every_s


class SlurmConfig(BaseModel):
    """SLURM job parameters, from a spec's `slurm:` section and the command line."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # partition to submit to (None: the cluster's default partition)
    partition: str | None = None
    # nodes per run
    nodes: int = Field(1, ge=1)
    # GPUs per node; a run with several GPUs gets one task per GPU (DDP)
    gpus_per_node: int = Field(0, ge=0)
    # CPU cores per task (None: the cluster's default)
    cpus_per_task: int | None = Field(None, ge=1)
    # memory per node in GB (None: the cluster's default, often the whole node)
    mem_gb: float | None = Field(None, gt=0)
    # time limit of one job in minutes; a longer run is checkpointed and requeued
    timeout_min: int = Field(24 * 60, ge=1)
    # node feature constraint (sbatch --constraint)
    constraint: str | None = None
    # account to charge (sbatch --account)
    account: str | None = None
    # quality of service (sbatch --qos)
    qos: str | None = None
    # array tasks of one submission running at the same time
    array_parallelism: int = Field(256, ge=1)
    # requeues allowed after a time limit or preemption before the run counts as failed
    max_requeues: int = Field(3, ge=0)
    # seconds before the time limit at which the job is told to checkpoint (sbatch --signal; slurmctld checks
    # every 30 s and may signal up to 30 s earlier)
    signal_delay_s: int = Field(120, ge=1)
    # job name shown by squeue
    job_name: str = "harness"
    # shell lines run in the batch script before the job (module load, source venv/bin/activate)
    setup: tuple[str, ...] = ()
    # further sbatch options without the leading dashes, e.g. {"exclusive": True, "mail-type": "FAIL"}
    additional_parameters: dict[str, str | int | bool] = Field(default_factory=dict)

    @property
    def tasks_per_node(self) -> int:
        return max(1, self.gpus_per_node)

    def tasks_for(self, processes: int = 1) -> int:
        """Tasks per node of a run that asks for `processes` CPU processes: one per GPU on GPU nodes, else its
        own count."""
        return self.tasks_per_node if self.gpus_per_node else max(1, processes)


def slurm_config(section: Mapping[str, Any] | None = None, **overrides: Any) -> SlurmConfig:
    """A spec's `slurm:` mapping with command-line values laid over it (None means not given)."""
    values = dict(section or {})
    extra = overrides.pop("additional_parameters", None)
    values.update({k: v for k, v in overrides.items() if v is not None})
    if extra:
        values["additional_parameters"] = {**values.get("additional_parameters", {}), **extra}
    return SlurmConfig.model_validate(values)


def parse_sbatch_options(options: Iterable[str]) -> dict[str, str | bool]:
    """`--sbatch` values of the command line: `key=value`, `--key=value` or a bare flag `exclusive`."""
    parsed: dict[str, str | bool] = {}
    for option in options:
        key, sep, value = option.lstrip("-").partition("=")
        if not key:
            raise ValueError(f"not an sbatch option: '{option}'")
        parsed[key] = value if sep else True
    return parsed


def executor_parameters(config: SlurmConfig, *, dependency: str | None = None, processes: int = 1) -> dict[str, Any]:
    """Keyword arguments of `submitit.AutoExecutor.update_parameters` for SLURM (`processes`: what the runs'
    configs ask for)."""
    params: dict[str, Any] = {
        "name": config.job_name,
        "timeout_min": config.timeout_min,
        "nodes": config.nodes,
        "tasks_per_node": config.tasks_for(processes),
        "gpus_per_node": config.gpus_per_node or None,
        "cpus_per_task": config.cpus_per_task,
        "mem_gb": config.mem_gb,
        "slurm_partition": config.partition,
        "slurm_constraint": config.constraint,
        "slurm_account": config.account,
        "slurm_qos": config.qos,
        "slurm_array_parallelism": config.array_parallelism,
        "slurm_signal_delay_s": config.signal_delay_s,
        "slurm_setup": list(config.setup) or None,
    }
    extra = dict(config.additional_parameters)
    if dependency:
        params["slurm_dependency"] = dependency
        # a run whose dependency failed is cancelled instead of pending forever
        extra.setdefault("kill-on-invalid-dep", "yes")
    params["slurm_additional_parameters"] = extra or None
    return {k: v for k, v in params.items() if v is not None}


def make_executor(folder: Path | str, config: SlurmConfig, *, dependency: str | None = None, processes: int = 1
                  ) -> submitit.AutoExecutor:
    """A submitit executor for SLURM; its jobs may be requeued `config.max_requeues` times on time-out."""
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_max_num_timeout=config.max_requeues)
    executor.update_parameters(**executor_parameters(config, dependency=dependency, processes=processes))
    return executor


def afterok(job_ids: Iterable[str]) -> str | None:
    """The sbatch dependency on all of `job_ids` completing successfully (None: no dependency)."""
    ids = sorted(set(job_ids))
    return "afterok:" + ":".join(ids) if ids else None


@dataclass(frozen=True)
class Node:
    """One job of a graph: `key` names it, `depends_on` names the nodes (or queued jobs) it needs, `processes`
    the CPU processes its run asks for."""

    key: str
    fn: Callable[[], Any]
    depends_on: tuple[str, ...] = ()
    processes: int = 1


def submit_dag(nodes: Sequence[Node], folder: Path | str, config: SlurmConfig, *,
               queued: Mapping[str, str] | None = None) -> dict[str, submitit.Job]:
    """Submit a whole graph at once: the nodes that need nothing as one job array, every other node with an
    `afterok` dependency on the jobs it needs (nodes sharing the same dependencies share an array).

    A dependency is another node's key, or a key of `queued` (a job already in the queue: key -> job id);
    any other key counts as satisfied (a run completed before). Returns key -> submitit job.
    """
    queued = dict(queued or {})
    by_key = {n.key: n for n in nodes}
    jobs: dict[str, submitit.Job] = {}
    done: set[str] = set()
    while len(done) < len(nodes):
        # the nodes whose in-graph dependencies are all submitted, grouped by what they wait for and their
        # process count (the jobs of one array share their parameters)
        groups: dict[tuple[str | None, int], list[Node]] = defaultdict(list)
        for node in nodes:
            if node.key in done or any(d in by_key and d not in done for d in node.depends_on):
                continue
            ids = [jobs[d].job_id if d in jobs else queued[d] for d in node.depends_on if d in jobs or d in queued]
            groups[(afterok(ids), node.processes)].append(node)
        if not groups:
            cycle = sorted(n.key for n in nodes if n.key not in done)
            raise ValueError(f"dependency cycle among {cycle}")
        for (dependency, processes), group in groups.items():
            executor = make_executor(folder, config, dependency=dependency, processes=processes)
            for node, job in zip(group, submit_array(executor, [n.fn for n in group])):
                jobs[node.key] = job
                done.add(node.key)
    return jobs


def submit_array(executor: submitit.Executor, fns: Sequence[Callable[[], Any]]) -> list[submitit.Job]:
    """Submit callables as one job array (a single callable as a plain job)."""
    with executor.batch():
        jobs = [executor.submit(fn) for fn in fns]
    return jobs


def submit_graph(to_run: Sequence[Any], jobs: Mapping[str, Callable[[], Any]], store: RunStore, token: str,
                 config: SlurmConfig, output: Path, progress: Callable[[str], None] = print) -> dict[str, submitit.Job]:
    """The launcher's SLURM step: submit `to_run` (PlannedRuns claimed under `token`) with their job callables,
    recording each job.

    A dependency outside `to_run` is judged by the launch's one rule (harness/launch/plan.py): completed is
    satisfied; alive under a SLURM job becomes an `afterok` on that job; one whose owner is dead is given up
    with its cause; anything else (dead, failed, or alive where `afterok` cannot reach it) fails the run
    unsubmitted.
    """
    folder = paths.log_dir(Path(output))
    planned = {r.hash for r in to_run}
    queued: dict[str, str] = {}
    # why a dependency outside the graph cannot be waited for
    unusable: dict[str, str] = {}
    judged = judge_dependencies(store, (d for r in to_run for d in r.depends_on if d not in planned), ())
    for dep, found in judged.items():
        slurm_job = slurm_job_id(found.record.job_id) if found.record is not None else None
        if found.state == WAIT and slurm_job is not None:
            queued[dep] = slurm_job
        elif found.state == WAIT:
            unusable[dep] = (f"run {dep[:10]} that this run needs is trained outside SLURM ({found.why}): "
                             "launch this run again once it completes")
        elif found.state == ORPHANED and found.record is not None:
            cause = liveness.reap(store, [found.record]).get(dep, found.why)
            unusable[dep] = f"run {dep[:10]} that this run needs was given up: {cause}"
        elif found.state != READY:
            unusable[dep] = found.why
    blocked: dict[str, str] = {}
    for run in to_run:  # in dependency order: a blocked run blocks the runs that need it in turn
        bad = next((d for d in run.depends_on if d in unusable or d in blocked), None)
        if bad:
            blocked[run.hash] = unusable.get(bad) or f"run {bad[:10]} that this run needs cannot run"
    for run in to_run:
        if run.hash in blocked:
            store.finish(run.hash, token, RunState.FAILED, error=blocked[run.hash])
            progress(f"{run.short}  failed: {blocked[run.hash]}  {run.describe()}")
    nodes = [Node(r.hash, jobs[r.hash], tuple(r.depends_on), _processes(r)) for r in to_run
             if r.hash not in blocked]
    submitted = submit_dag(nodes, folder, config, queued=queued)
    for run in to_run:
        job = submitted.get(run.hash)
        if job is None:
            continue
        if not store.record_submission(run.hash, token, stored_job_id("slurm", str(job.job_id)),
                                       log_path=str(job.paths.stderr)):
            cancel_jobs([str(job.job_id)])  # cancelled while it was being submitted: it must not train
            progress(f"{run.short}  cancelled as it was submitted: SLURM job {job.job_id} scancelled  {run.describe()}")
            continue
        waits = [d[:10] for d in run.depends_on if d in planned or d in queued]
        progress(f"{run.short}  submitted (SLURM job {job.job_id}" + (f", after {', '.join(waits)})" if waits else ")")
                 + f"  {run.describe()}")
    return submitted


def _processes(run: Any) -> int:
    """The CPU processes a run asks for (a run without a config, such as a test's stand-in, asks for one)."""
    config = getattr(run, "config", None)
    return getattr(config, "processes", 1)


def cancel_jobs(job_ids: Iterable[str]) -> None:
    """scancel the given SLURM jobs (a job already gone is no error)."""
    ids = sorted(set(job_ids))
    if ids:
        subprocess.run(["scancel", *ids], check=False, capture_output=True)


# seconds between two checks, while waiting on SLURM, that every job is still alive
REAP_EVERY_S = 15.0


@dataclass(frozen=True)
class SlurmExecutor:
    """The SLURM executor: the claimed runs go out as one graph; `detach` returns right after submitting."""

    config: SlurmConfig
    output: Path
    poll_s: float = 1.0
    detach: bool = False

    def run(self, claimed: Claimed) -> None:
        run_on_slurm(claimed.runs, claimed.jobs, claimed.store, claimed.owner, self.config, self.output,
                     self.poll_s, self.detach, claimed.progress, claimed.result)


def run_on_slurm(claimed: Sequence[Any], jobs: Mapping[str, Callable[[], Any]], store: RunStore, owner: Owner,
                 config: SlurmConfig, output: Path, poll_s: float, detach: bool, progress: Callable[[str], None],
                 result: LaunchResult) -> None:
    """The SLURM executor's whole life for a launch: submit the claimed runs as one graph, then (unless
    `detach`) wait for them, reaping the jobs SLURM ended without a word; Ctrl-C scancels what is unfinished."""
    submitted = submit_graph(claimed, jobs, store, owner.token, config, output, progress)
    result.submitted.extend(r.hash for r in claimed if r.hash in submitted)
    if detach:
        return
    ours = [r for r in claimed if r.hash in submitted]
    left = {r.hash: r for r in ours}
    watch = Watcher(store, progress)

    def look() -> bool:
        ended = False
        for record in store.runs(hashes=list(left)):
            lost = taken_over(record, owner.token)
            if not lost and record.status not in FINISHED:
                watch.poll(left[record.hash], record)
                continue
            run, ended = left.pop(record.hash), True
            if lost:
                result.taken_over.append(run)
                watch.event(run, TAKEN_OVER)
            elif record.status == RunState.COMPLETED:
                watch.completed(run, record)
            else:
                result.failures.append(Failure(run, record.error or record.status, record.log_path))
                watch.ended(run, record.status, record.error, record.log_path)
        return ended

    def renew() -> None:
        # a job SLURM ended without a word from it (cancelled, failed dependency, lost node) ends its run
        liveness.reap(store, store.runs(hashes=list(left)))
        store.renew_leases(owner.token)

    wait_for_jobs(look, busy=lambda: bool(left), renew=renew, stop=lambda: _cancel_cluster_runs(ours, store),
                  poll_s=poll_s, renew_every_s=lambda: min(REAP_EVERY_S, renew_every_s()))


def _cancel_cluster_runs(runs: list[Any], store: RunStore) -> list[str]:
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
