"""SLURM through submitit: job parameters, a run graph as job arrays with `afterok` dependencies, requeues.

The launcher hands `submit_graph` the runs to train (in dependency order) and their job callables.
Independent runs go out as one job array (at most `array_parallelism` running at once); a run that needs
another run of the same launch (a student and its teacher, a fine-tune and its source) is submitted at the
same time with `--dependency=afterok:<job>`, so SLURM orders the graph and nothing waits in the launcher.
A job that reaches its time limit or is preempted is checkpointed by submitit (its callable is a
`submitit.helpers.Checkpointable`), requeued, and resumes from the run's last checkpoint, at most
`max_requeues` times. What SLURM says of the jobs afterwards is read by `harness.launch.queue`.
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
from harness.launch.protocols import RunStore
from harness.launch.queue import slurm_job_id, stored_job_id
from harness.states import ACTIVE


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

    A dependency outside `to_run` is looked up in the store: completed is satisfied; active with a SLURM job
    id becomes an `afterok` on that job; anything else fails the run unsubmitted.
    """
    folder = paths.log_dir(Path(output))
    planned = {r.hash for r in to_run}
    queued: dict[str, str] = {}
    blocked: dict[str, str] = {}
    for run in to_run:
        for dep in run.depends_on:
            if dep in planned or dep in queued:
                continue
            record = store.get_run(dep)
            status = record.status if record else None
            if status in ACTIVE and slurm_job_id(record.job_id):
                queued[dep] = slurm_job_id(record.job_id)
            elif status != "completed":
                blocked[run.hash] = f"run {dep[:10]} that this run needs is {status or 'unknown'}"
    # a run blocked by a dead dependency blocks the runs that need it in turn
    for run in to_run:
        if run.hash not in blocked:
            bad = next((d for d in run.depends_on if d in blocked), None)
            if bad:
                blocked[run.hash] = f"run {bad[:10]} that this run needs cannot run"
    for run in to_run:
        if run.hash in blocked:
            store.finish(run.hash, token, "failed", error=blocked[run.hash])
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
