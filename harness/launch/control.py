"""Steering runs after submission: find them, read their logs, cancel them, rebuild them for a retry.

Everything here goes through the store, so it works the same from another shell, another node or a later
day than the `harness run` that submitted the jobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from harness.config import RunConfig
from harness.launch import logs, processes, queue
from harness.launch.launcher import plan_checks, submit_runs
from harness.launch.outcome import LaunchResult
from harness.launch.protocols import RunStore
from harness.launch.slurm import cancel_jobs
from harness.spec import PlannedRun
from harness.spec.reader import YamlError, parse
from harness.states import FINISHED, UNTRAINED_ENDINGS, RunState
from harness.store.records import RunRecord


def find_runs(store: RunStore, selector: str) -> list[RunRecord]:
    """Runs named by a spec name or a hash prefix (at least 4 characters)."""
    runs = store.runs()
    by_spec = [r for r in runs if r.spec == selector]
    if by_spec:
        return by_spec
    if len(selector) >= 4:
        matches = [r for r in runs if r.hash.startswith(selector)]
        if matches:
            return matches
    raise LookupError(f"no spec or run matches '{selector}'")


def log_text(store: RunStore, selector: str) -> str:
    """The run's own log: every job's stdout (the trainer's epoch lines) and stderr, oldest job first, without
    submitit's bookkeeping lines."""
    runs = find_runs(store, selector)
    if len(runs) != 1:
        raise LookupError(f"'{selector}' matches {len(runs)} runs; give a longer hash prefix")
    record = runs[0]
    if not record.log_path:
        raise LookupError(f"run {record.short} has no log yet (status: {record.status})")
    files = logs.run_log_files(record.log_path, record.hash)
    if not files:
        raise LookupError(f"the log of run {record.short} is not at {record.log_path}")
    jobs = list(dict.fromkeys(path.name.split("_")[0] for path in files))
    parts = []
    for path in files:
        job = path.name.split("_")[0]
        if len(jobs) > 1 and path.suffix == ".out":
            parts.append(f"### job {job}: the run's job {jobs.index(job) + 1} of {len(jobs)}")
        parts.append(f"==> {path} <==\n{logs.readable(path.read_text(errors='replace'))}")
    return "\n".join(parts)


@dataclass(frozen=True)
class Cancelled:
    hash: str
    # what happened to its job: stopped, scancelled, left to notice at its next heartbeat, or none yet
    job: str


def cancel(store: RunStore, selector: str) -> list[Cancelled]:
    """Cancel the unfinished runs of a spec (or one run), and stop the jobs this machine can prove are theirs."""
    done = []
    for record in find_runs(store, selector):
        if record.status in FINISHED or not store.cancel(record.hash):
            continue
        done.append(Cancelled(record.hash, stop_job(record)))
    return done


def stop_job(record: RunRecord) -> str:
    """Stop a cancelled run's job when it can be proven to be the run's; say what was done."""
    job = queue.slurm_job_id(record.job_id)
    if job is not None:
        cancel_jobs([job])
        return f"SLURM job {job} scancelled"
    pid = queue.local_pid(record.job_id)
    if pid is None:
        return "no job was submitted yet"
    if (record.job_id or "").startswith("debug:"):
        # an in-process debug job is its launcher: signalling it would end the launcher's other runs too
        return "it runs inside its launcher (debug executor) and stops at its next heartbeat"
    if record.owner_host is None or record.job_started is None:
        return f"process {pid} not signalled: the store does not say which process it is; it stops at its next heartbeat"
    ref = processes.ProcessRef(record.owner_host, pid, record.job_started, record.owner_boot, record.owner_pidns)
    refused = processes.why_not_ours(ref)
    if refused:
        return f"not signalled ({refused}); it stops at its next heartbeat"
    processes.stop_tree(ref)
    return f"its job (process {pid}) was stopped"


def failed_runs(store: RunStore, spec: str | None = None) -> list[Any]:
    """Planned runs rebuilt from the store for every failed or cancelled run (of one spec)."""
    return [planned_run(r) for r in store.runs(spec=spec) if r.status in UNTRAINED_ENDINGS and r.source is None]


def planned_run(record: RunRecord) -> Any:
    """A stored run as the launcher takes it."""
    return PlannedRun(
        hash=record.hash, config=RunConfig.model_validate(record.config), spec=record.spec or "",
        profile=record.profile, variant=record.variant or "", label=record.label or "",
        coords=dict(record.coords or {}), seed=record.seed or 0, depends_on=record.depends_on,
    )


def retry_failed(store: RunStore, db_url: str, spec: str | None,
                 options_for: Callable[[dict[str, Any], str], Any], progress: Callable[[str], None] = print) -> Any:
    """`harness retry --failed`: claim and train again the failed or cancelled runs (of one spec), each spec's
    runs with the options `options_for(its slurm: section, its name)` gives; None when there is nothing to retry.
    Every spec's runs pass the checks `harness run` makes (`plan_checks`) before any is submitted."""
    runs = failed_runs(store, spec)
    if not runs:
        return None
    checked = []
    for name in dict.fromkeys(r.spec for r in runs):
        again = [r for r in runs if r.spec == name]
        # the completed runs of the spec, as `harness run` finds them: the teachers and sources runs learn from
        completed = [planned_run(r) for r in store.runs(hashes=sorted({h for run in again for h in run.depends_on}))
                     if r.status == RunState.COMPLETED]
        options = options_for(slurm_section(store, name), name)
        plan_checks(again, completed, store, options)
        checked.append((again, options))
    result = LaunchResult([])
    for again, options in checked:
        submit_runs(again, store, db_url, options, progress=progress, result=result)
    return result


def slurm_section(store: RunStore, spec: str) -> dict[str, Any]:
    """The `slurm:` section of a spec as it was last launched (its stored text), for a retry."""
    for experiment in store.experiments():
        if experiment.name == spec and experiment.spec_text:
            try:
                data = parse(experiment.spec_text)
            except YamlError:
                return {}
            section = data.get("slurm") if isinstance(data, dict) else None
            return dict(section) if isinstance(section, dict) else {}
    return {}
