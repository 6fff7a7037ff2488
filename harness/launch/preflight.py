"""What a run needs from disk or the hub cache, checked before anything is written or submitted: one line per
problem.

A missing dataset folder or checkpoint used to surface inside the job, after submission (on a cluster,
after hours in the queue). Paths are checked on the machine that launches: local jobs run here, and SLURM
jobs must see the same files (the output folder is shared the same way), relative paths from the same
working directory.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterable

from harness import paths
from harness.launch.protocols import RunStore
from harness.store.records import RunRecord
from harness.spec import PlannedRun
from harness.weights import WEIGHT_ROLES, check_weights, named_weights


def problems(runs: Iterable[PlannedRun], executor: str | None = None, output: Path | None = None,
             completed: Iterable[PlannedRun] = (), store: RunStore | None = None) -> list[str]:
    """One line per missing file, folder or published weight a run would need, naming the run, the key and the
    path (a weight: its tag and the command that fetches it), and per SLURM command the executor needs; every
    problem, in the order found (a dry run shows them all at once). With the output folder, a teacher or
    fine-tune source named by run that is `completed` (so no launch will train it again) must have left its
    weights there. A published weight must be what its hub-cache name promises and, with the store, the file
    that the stored runs of its tag used."""
    runs = list(runs)
    done = {run.hash: run for run in completed}
    found: list[str] = []
    seen: set[tuple[str, str]] = set()
    for run in runs:
        sources = _source_problems(run, Path(output), done, store) if output is not None else []
        for key, problem in _run_problems(run) + sources:
            if (key, problem) not in seen:
                seen.add((key, problem))
                found.append(f"{run.short} {run.describe()}: {key}: {problem}")
    tags = named_weights(runs)
    records = runs_that_used(store, tags) if store is not None and tags else []
    return found + check_weights(runs, records) + (executor_problems(executor) if runs else [])


def runs_that_used(store: RunStore, tags: list[str]) -> list[RunRecord]:
    """The stored runs that recorded one of the weight `tags`, found by the database's index on run info rather
    than by reading every run of the store."""
    found: dict[str, RunRecord] = {}
    for role in WEIGHT_ROLES:
        found.update((record.hash, record) for record in store.runs_with_info(f"{role}_weights", tags))
    return list(found.values())


# the SLURM commands a launch runs here (submitit submits with sbatch, watches with squeue and sacct) or its jobs run
SLURM_COMMANDS = ("sbatch", "srun")


def executor_problems(executor: str | None) -> list[str]:
    """The SLURM commands that `--executor slurm` needs and this machine lacks."""
    if executor != "slurm":
        return []
    return [f"--executor slurm: no `{name}` command here (run on a SLURM login node, or use --executor local)"
            for name in SLURM_COMMANDS if shutil.which(name) is None]


def _run_problems(run: PlannedRun) -> list[tuple[str, str]]:
    config = run.config
    out = []
    if config.data.name == "imagefolder":
        out += _imagefolder(config.data.root)
    teacher = config.distillation.teacher
    if config.distillation.kind != "none" and teacher is not None and teacher.checkpoint:
        out += _file("distillation.teacher.checkpoint", teacher.checkpoint)
    if config.finetune is not None and config.finetune.checkpoint:
        out += _file("finetune.checkpoint", config.finetune.checkpoint)
    return out


def _source_problems(run: PlannedRun, output: Path, done: dict[str, PlannedRun],
                     store: RunStore | None) -> list[tuple[str, str]]:
    """The weights file each completed run this run learns from (its teacher, its fine-tune source) published:
    the only file of it a job reads. Without the store, the plain name (a run outside one)."""
    config = run.config
    teacher = config.distillation.teacher
    wanted = []
    if config.distillation.kind != "none" and teacher is not None and teacher.run:
        wanted.append(("distillation.teacher.run", teacher.run, paths.MODEL_ROLE))
    if config.finetune is not None and config.finetune.from_run:
        wanted.append(("finetune.from_run", config.finetune.from_run,
                       paths.EMA_ROLE if config.finetune.use_ema else paths.MODEL_ROLE))
    out = []
    for key, source, role in wanted:
        if source not in done:
            continue
        published = store.run_files(source).get(role) if store is not None else None
        if store is not None and published is None:
            out.append((key, f"run {done[source].short} ({done[source].describe()}) is completed but published no "
                             f"{role} weights"))
            continue
        name = published.name if published is not None else paths.PLAIN_NAMES[role]
        if not (file := paths.run_dir(output, source) / name).is_file():
            out.append((key, f"run {done[source].short} ({done[source].describe()}) is completed but its "
                             f"weights file {file} is gone"))
    return out


def _imagefolder(root: str | None) -> list[tuple[str, str]]:
    if not root:
        return [("data.root", "the imagefolder dataset needs a root folder holding train/ and val/")]
    base = Path(root).expanduser()
    if not base.is_dir():
        return [("data.root", f"no folder {base}")]
    missing = [name for name in ("train", "val") if not (base / name).is_dir()]
    if missing:
        return [("data.root", f"{base} has no {' or '.join(missing)}/ folder of class folders")]
    return []


def _file(key: str, path: str) -> list[tuple[str, str]]:
    file = Path(path).expanduser()
    if not file.is_file():
        return [(key, f"no file {file}")]
    return []
