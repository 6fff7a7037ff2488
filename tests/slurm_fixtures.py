"""Fixtures and job callables for the tests that submit to a real SLURM (`.ci/slurm.sh` starts one).

- `slurm` (module scope): a `SlurmConfig` for quick test jobs on the local SLURM, with the test-only `sacct`
  stand-in (tests/slurm_tools) first on PATH for submitit, and the repository on PYTHONPATH so jobs can
  unpickle the callables below. In CI (CI=true) a SLURM that is not up fails the test; elsewhere it skips.
  Jobs left behind by a test are cancelled afterwards.
- Job callables: `square`, `fail`, `sleep_then_write`, `read_after`, `sleep`, and `Counter`, a deterministic
  stateful job that resumes from its own checkpoint file when requeued.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator

import pytest
import submitit

from harness.launch.slurm import SlurmConfig

REPO = Path(__file__).resolve().parent.parent
TOOLS = Path(__file__).resolve().parent / "slurm_tools"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def slurm_problem(settle_s: float = 60.0) -> str | None:
    """Why the local SLURM cannot take jobs, or None when it can. A node still completing an earlier test's jobs
    (`comp`) takes jobs again in moments: it is given `settle_s` seconds, looked at every second."""
    deadline = time.monotonic() + settle_s
    while True:
        problem, settling = _slurm_problem_now()
        if problem is None or not settling or time.monotonic() > deadline:
            return problem
        time.sleep(1.0)


def _slurm_problem_now() -> tuple[str | None, bool]:
    """(why SLURM cannot take jobs now or None, whether a node is only completing jobs)."""
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"sinfo failed ({type(exc).__name__}: {exc})", False
    states = out.stdout.split()
    if out.returncode != 0 or not states:
        return f"sinfo failed: {out.stderr.strip() or 'no nodes'}", False
    if not any(s in ("idle", "mix", "alloc") for s in states):
        return (f"no SLURM node takes jobs (node states: {', '.join(states)})",
                any(s.startswith("comp") for s in states))
    return None, False


@pytest.fixture(scope="module")
def slurm() -> Iterator[SlurmConfig]:
    problem = slurm_problem()
    if problem:
        reason = f"SLURM is not up: {problem}; run `sudo bash .ci/slurm.sh`"
        if _in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    name = f"harness-test-{uuid.uuid4().hex[:8]}"
    with pytest.MonkeyPatch.context() as mp:
        # submitit reads job states with sacct; the CI SLURM has no accounting, so a stand-in answers
        mp.setenv("PATH", f"{TOOLS}{os.pathsep}{os.environ.get('PATH', '')}")
        # jobs inherit the environment (sbatch --export=ALL) and unpickle tests.slurm_fixtures callables
        mp.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
        yield SlurmConfig(partition="debug", cpus_per_task=1, mem_gb=0.25, timeout_min=5, signal_delay_s=30,
                          job_name=name)
    subprocess.run(["scancel", f"--name={name}"], capture_output=True)


def wait_until(condition: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(every_s)


def squeue_field(job_id: str, fmt: str) -> str:
    out = subprocess.run(["squeue", "-h", "--states=all", "-o", fmt, "-j", job_id], capture_output=True, text=True)
    return out.stdout.strip()


# ---- a stand-in for the store and the planned runs that submit_graph reads and writes


@dataclass(frozen=True)
class FakeRun:
    hash: str
    depends_on: tuple[str, ...] = ()

    @property
    def short(self) -> str:
        return self.hash[:10]

    def describe(self) -> str:
        return f"fake run {self.hash}"


@dataclass
class FakeStore:
    """The few store calls that SLURM submission and reaping make, on plain records (no owner checks)."""

    records: dict[str, SimpleNamespace] = field(default_factory=dict)

    def add(self, run_hash: str, status: str, job_id: str | None = None) -> None:
        self.records[run_hash] = SimpleNamespace(
            hash=run_hash, status=status, job_id=job_id, error=None, log_path=None, source=None, owner="token",
            owner_host=None, owner_pid=None, owner_started=None, owner_boot=None, owner_pidns=None, lease_until=None,
            job_started=None, heartbeat_at=None, started_at=None, created_at=None)

    def get_run(self, run_hash: str) -> SimpleNamespace | None:
        return self.records.get(run_hash)

    def runs(self, hashes=None) -> list[SimpleNamespace]:
        return [r for h, r in self.records.items() if hashes is None or h in hashes]

    def record_submission(self, run_hash: str, token: str, job_id: str, *, job_started=None,
                          log_path=None) -> bool:
        record = self.records[run_hash]
        record.job_id, record.log_path = job_id, log_path or record.log_path
        record.status = "submitted" if record.status == "queued" else record.status
        return True

    def finish(self, run_hash: str, token: str, status: str, error: str | None = None) -> bool:
        self.records[run_hash].status, self.records[run_hash].error = status, error
        return True

    def give_up(self, run_hash: str, observed_owner, error: str, status: str = "failed") -> bool:
        return self.finish(run_hash, "token", status, error)


# ---- job callables (module-level, so jobs unpickle them by reference)


def square(x: int) -> int:
    return x * x


def fail() -> None:
    raise RuntimeError("this job fails on purpose")


def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def sleep_then_write(path: str, text: str, seconds: float) -> float:
    """A teacher: works a while, leaves its output, returns when it finished."""
    time.sleep(seconds)
    Path(path).write_text(text)
    return time.time()


def read_after(path: str) -> tuple[float, str]:
    """A student: reads its teacher's output; returns when it started and what it read."""
    return time.time(), Path(path).read_text()


@dataclass
class Counter(submitit.helpers.Checkpointable):
    """`steps` deterministic steps of a small recurrence, its state in `folder/state.json` after each step (as
    the trainer keeps checkpoint.pt), resumed from there when requeued. Each start is logged in
    `folder/starts`. The first attempt sleeps `step_s` per step so that the time limit interrupts it; a
    requeued attempt runs at full speed (the result does not depend on the pace)."""

    folder: str
    steps: int
    step_s: float = 0.0
    requeues: int = 0
    max_requeues: int = 1

    def __call__(self) -> int:
        folder = Path(self.folder)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "starts", "a") as log:
            log.write(f"{time.time():.3f} requeues={self.requeues}\n")
        state_file = folder / "state.json"
        state = json.loads(state_file.read_text()) if state_file.exists() else {"step": 0, "value": 1}
        while state["step"] < self.steps:
            state = {"step": state["step"] + 1, "value": (state["value"] * 31 + state["step"]) % 1_000_003}
            tmp = folder / "state.json.tmp"
            tmp.write_text(json.dumps(state))
            os.replace(tmp, state_file)
            if self.requeues == 0:
                time.sleep(self.step_s)
        return state["value"]

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission | None:
        if self.requeues >= self.max_requeues:
            return None
        again = Counter(self.folder, self.steps, self.step_s, self.requeues + 1, self.max_requeues)
        return submitit.helpers.DelayedSubmission(again, *args, **kwargs)
