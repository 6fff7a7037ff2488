"""Executors by name (local processes, in-process debug, SLURM) and the interface the launcher speaks to them.

The launcher plans and claims; then it hands an executor the `Claimed` runs, and the executor owns their
jobs' life: it submits each run as its dependencies allow (harness/launch/plan.py's one rule), waits for them
unless detached, and on Ctrl-C stops what it started and gives back the rest (`LaunchInterrupted`). The
local and debug executors live in harness/launch/local.py, SLURM's in harness/launch/slurm.py; both wait in
`wait_for_jobs`, the one wait loop of a launch.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import submitit

from harness.launch.interrupts import LaunchInterrupted, signal_name, signals_held
from harness.launch.job import RunJob
from harness.launch.outcome import LaunchResult
from harness.launch.protocols import RunStore
from harness.spec import PlannedRun
from harness.states import Owner, renew_every_s

EXECUTORS = ("auto", "local", "debug", "slurm")


def threads_per_run(threads: int | None, executor: str, max_parallel: int = 1) -> int | None:
    """The one rule for torch's CPU threads in a run (the launcher's jobs and the estimate's probe): the explicit
    option; else none forced on SLURM (its cpus-per-task decide) or where OMP_NUM_THREADS is set (torch honours
    it); else this machine's cores split between the runs trained at once, which would otherwise oversubscribe
    them."""
    if threads is not None:
        return threads
    if executor == "slurm" or os.environ.get("OMP_NUM_THREADS"):
        return None
    return max(1, (os.cpu_count() or 1) // max(1, max_parallel))


def default_max_parallel(threads: int | None = None) -> int:
    """`--max-parallel` left out: one run per visible GPU (every GPU of a workstation busy), else on CPU as many
    runs as the cores allow at `threads` each (one core each when not told: `threads_per_run` then splits the
    cores between the runs that actually train at once)."""
    gpus = local_gpu_ids()
    if gpus:
        return len(gpus)
    return max(1, (os.cpu_count() or 1) // (threads or 1))


def resolve_executor(name: str) -> str:
    """`auto` is SLURM where `srun` exists, else local processes."""
    if name not in EXECUTORS:
        raise ValueError(f"unknown executor '{name}'; choose one of: {', '.join(EXECUTORS)}")
    if name == "auto":
        return "slurm" if shutil.which("srun") else "local"
    return name


@dataclass
class Claimed:
    """What a launch hands its executor: the runs it claimed (dependencies first) and their jobs."""

    runs: list[PlannedRun]
    jobs: dict[str, RunJob]
    store: RunStore
    owner: Owner
    progress: Callable[[str], None]
    # what the executor reports back: submitted runs, failures
    result: LaunchResult
    # the other runs of the spec, which a waiting executor trains itself when their owner dies, and their jobs
    ours: dict[str, PlannedRun]
    make_job: Callable[[PlannedRun], RunJob]


class Executor(Protocol):
    def run(self, claimed: Claimed) -> None:
        """Submit the claimed runs as their dependencies allow and (unless detached) wait for them to end."""
        ...


def wait_for_jobs(look: Callable[[], bool], busy: Callable[[], bool], renew: Callable[[], object],
                  stop: Callable[[], list[str]], poll_s: float,
                  renew_every_s: Callable[[], float] = renew_every_s) -> None:
    """The one wait loop of every executor. While `busy()`: `look()` at the runs (start what may start now,
    record what ended; True when anything moved), `renew()` the launch's claims every `renew_every_s()` seconds
    (read each pass: the lease may be set per launch), and sleep `poll_s` after a look that moved nothing, so a
    wait on a job, a dependency or another launch's run costs no CPU and is judged again at every pass. Ctrl-C
    or SIGTERM: `stop()` ends what the executor started (one line per run) and the launch is interrupted."""
    renewed = time.monotonic()
    try:
        while busy():
            moved = look()
            if time.monotonic() - renewed > renew_every_s():
                renew()
                renewed = time.monotonic()
            if not moved and busy():
                time.sleep(poll_s)
    except KeyboardInterrupt as exc:
        with signals_held():
            lines = stop()
        raise LaunchInterrupted(signal_name(exc), lines) from None


def make_local_executor(name: str, folder: Path) -> submitit.Executor:
    folder.mkdir(parents=True, exist_ok=True)
    if name == "local":
        executor = submitit.LocalExecutor(folder=folder)
        # submitit's local default is a 2-minute time limit (SIGUSR2 after 90 s): training runs take longer
        executor.update_parameters(timeout_min=7 * 24 * 60)
        return executor
    if name == "debug":
        return submitit.DebugExecutor(folder=folder)
    raise ValueError(f"'{name}' is not a local executor")


def local_gpu_ids() -> list[int]:
    """This machine's GPUs as CUDA device ids, honouring CUDA_VISIBLE_DEVICES (no GPU: empty). Read without
    initialising CUDA, so the launcher holds no memory on a GPU its jobs need."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [int(x) for x in visible.split(",") if x.strip().isdigit()]
    if not shutil.which("nvidia-smi"):
        return []
    listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False)
    return [i for i, line in enumerate(listed.stdout.splitlines()) if line.startswith("GPU ")]
