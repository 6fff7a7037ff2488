"""Where a run's code and machine came from: `collect()` -> a plain dict stored with the run.

git commit and dirty flag of the harness checkout, versions of python/torch/timm/harness, host,
accelerator name, torch's thread count, the version of the data orders (`DATA_ORDER`), SLURM job id and the
command line. Passwords in database URLs on the command
line are replaced by *** before anything is stored. Nothing here fails: a fact that cannot be
found is None.
"""

from __future__ import annotations

import os
import platform
import shlex
import socket
import subprocess
import sys
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import harness
from harness import registry
from harness.words import redact

# the version of the trainer's data orders (harness/trainer/loaders.py: epoch_seed): runs of different versions
# visit their data in different orders, so `harness report` says when a cell mixes them. Runs stored before it was
# recorded count as version 1 (each epoch shuffled by seed + epoch); 2: (seed, epoch) mixed by numpy's SeedSequence
DATA_ORDER = 2
# what a run stored without the key is
DATA_ORDER_BEFORE = 1



def collect() -> dict[str, Any]:
    """Provenance of the current process, for `Store.mark_started`."""
    commit, dirty = git_state()
    return {
        "git_commit": commit,
        "git_dirty": dirty,
        "python": platform.python_version(),
        "torch": _version("torch"),
        "timm": _version("timm"),
        "harness": _version("deit-harness") or _harness_version(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "device": device_name(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "slurm_array_task_id": os.environ.get("SLURM_ARRAY_TASK_ID"),
        "command": redact(shlex.join(sys.argv)),
        # the lab's own modules (a spec's `imports:`) imported so far, each with its source files' SHA-256
        "imports": registry.imported(),
        "data_order": DATA_ORDER,
        # intra-op threads of a CPU run: a rerun on another thread count may differ in the last digit
        "torch_threads": _torch_threads(),
    }


@lru_cache(maxsize=1)
def git_state(root: Path | None = None) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the git checkout holding the harness; (None, None) outside one."""
    where = root or Path(__file__).resolve().parent.parent
    try:
        commit = _git(where, "rev-parse", "HEAD")
        status = _git(where, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit.strip() or None, bool(status.strip())


def _git(where: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True, check=True,
                          timeout=10).stdout


def device_name() -> str | None:
    """The accelerator's name when torch is already imported and sees one; else the CPU's."""
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available():
            return str(torch.cuda.get_device_name(0))
    except Exception:  # a broken driver must not stop a run from starting
        pass
    return _cpu_name()


def _torch_threads() -> int | None:
    """torch's intra-op thread count when torch is already imported (the job sets it before collecting)."""
    torch = sys.modules.get("torch")
    return int(torch.get_num_threads()) if torch is not None else None


def _cpu_name() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _harness_version() -> str | None:
    return getattr(harness, "__version__", None)
