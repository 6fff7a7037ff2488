"""What SLURM says of its jobs: `squeue` for the jobs it still holds, `sacct` for the ones it finished.

Job ids are stored with the executor's name (`slurm:123_4`, `local:4711`); `slurm_job_id` reads the SLURM
one back. `job_states` asks SLURM's own commands (submitit's public API has no query by job id), so it works
from any shell on the cluster, hours after the launch that submitted the jobs.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Iterable

from harness.states import RunState

# a job that SLURM no longer lists anywhere (finished longer ago than MinJobAge, accounting off)
UNLISTED = "UNLISTED"
# SLURM job states (long names) -> the run states they mean
STATUS_OF_STATE = {
    "PENDING": RunState.SUBMITTED,
    **dict.fromkeys(("CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "RESIZING", "SIGNALING"),
                    RunState.RUNNING),
    **dict.fromkeys(("REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "PREEMPTED"), RunState.REQUEUED),
    "COMPLETED": RunState.COMPLETED,
    **dict.fromkeys(("CANCELLED", "REVOKED"), RunState.CANCELLED),
    **dict.fromkeys(("FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "SPECIAL_EXIT"),
                    RunState.FAILED),
}
TIMEOUT_S = 30


def stored_job_id(executor: str, raw: str) -> str:
    """How a job id is stored: the executor's name, a colon, its own id (the pid of a local job)."""
    return f"{executor}:{raw}"


def slurm_job_id(stored: str | None) -> str | None:
    """The SLURM id in a stored job id (`slurm:123_4` -> `123_4`); None for another executor's job."""
    executor, _, raw = (stored or "").partition(":")
    return raw if executor == "slurm" and raw else None


def local_pid(stored: str | None) -> int | None:
    """The pid in a stored local (or in-process debug) job id; None for another executor's job."""
    executor, _, raw = (stored or "").partition(":")
    return int(raw) if executor in ("local", "debug") and raw.isdigit() else None


def store_status(slurm_state: str) -> str | None:
    """The run state a SLURM job state means ("CANCELLED by 0" -> cancelled); None when unknown."""
    words = slurm_state.split()
    return STATUS_OF_STATE.get(words[0].upper()) if words else None


def job_states(job_ids: Iterable[str]) -> dict[str, str]:
    """Job id -> SLURM state for every id SLURM can speak of. A job absent from a working `squeue` and
    unknown to `sacct` is UNLISTED; ids are left out only when SLURM cannot be asked at all."""
    ids = sorted(set(job_ids))
    if not ids or not shutil.which("squeue"):
        return {}
    queued = _squeue(ids)
    if queued is None:
        return {}
    missing = [i for i in ids if i not in queued]
    finished = _sacct(missing) if missing else {}
    return {i: queued.get(i) or finished.get(i) or UNLISTED for i in ids}


def _squeue(ids: list[str]) -> dict[str, str] | None:
    """States of the jobs SLURM still holds; None when squeue does not answer."""
    out = _ask(["squeue", "--noheader", "--array", "--states=all", "--format=%i|%T", f"--jobs={','.join(ids)}"])
    if out is None:
        # squeue refuses the whole list when one id is unknown to it: ask for each alone
        answers = [_ask(["squeue", "--noheader", "--array", "--states=all", "--format=%i|%T", f"--jobs={i}"])
                   for i in ids]
        if all(a is None for a in answers) and _ask(["squeue", "--noheader", "--format=%i", "--me"]) is None:
            return None  # not an unknown id: squeue itself does not answer
        out = "\n".join(a for a in answers if a)
    return _parse(out)


def _sacct(ids: list[str]) -> dict[str, str]:
    out = _ask(["sacct", "--noheader", "--parsable2", "--allocations", "--format=JobID,State",
                f"--jobs={','.join(ids)}"]) if shutil.which("sacct") else None
    return _parse(out or "")


def _parse(text: str) -> dict[str, str]:
    states = {}
    for line in text.splitlines():
        job, _, state = line.strip().partition("|")
        if job and state and job != "JobID":
            states[job] = state.split("|")[0]
    return states


def _ask(command: list[str]) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None
