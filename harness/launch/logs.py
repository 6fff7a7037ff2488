"""A job's log files (submitit writes `<job>_log.out` and `<job>_log.err`), and what they say of its end."""

from __future__ import annotations

import re
from pathlib import Path

# the last lines of a log worth reading for the cause of a job's death
TAIL_BYTES = 64 * 1024
# `OSError: [Errno 28] No space left on device`, `harness.trainer.loop.TrainingDiverged: loss is nan ...`
EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Interrupt|Diverged|Exit|Lost|Stopped)\b.*")
# what the OS, SQLite and PostgreSQL say when the disk (or the user's quota) is full
DISK_FULL = re.compile(r"No space left on device|Disk quota exceeded|database or disk is full|\[Errno (?:28|122)\]"
                       r"|could not extend file")
# submitit's last word when it cannot even save the job's error, the disk being full (submitit/core/submission.py):
# "submitit ERROR (...) - Could not dump error:\n<the job's error>\n\nbecause of <why it could not save it>"
DUMP_FAILED = "Could not dump error:"


# what a job prints first (RunJob), so that every job a run ever had is found again among submitit's logs
def start_line(run_hash: str, host: str, when: str) -> str:
    return f"run {run_hash} starts on {host} at {when}"


# submitit's own bookkeeping ("Starting with JobEnvironment(...)", "Loading pickle: ...", "Exiting after ...")
SUBMITIT_NOISE = re.compile(r"^submitit (?:INFO|DEBUG) \(")
# bytes read from the head of each log when looking for a run's jobs
HEAD_BYTES = 4096


def run_log_files(log_path: str | None, run_hash: str) -> list[Path]:
    """Every log file of every job the run had (a resumed or retried run has several), oldest job first: the
    logs beside its latest one that start with the run's `start_line`, and the latest one's own."""
    latest = log_files(log_path)
    if not latest:
        return []
    marker = f"run {run_hash} starts".encode()
    found = set(latest)
    for out in latest[0].parent.glob("*_log.out"):
        try:
            with open(out, "rb") as handle:
                head = handle.read(HEAD_BYTES)
        except OSError:
            continue
        if marker in head:
            found.update(p for p in (out, out.with_suffix(".err")) if p.exists())
    return sorted(found, key=lambda p: (p.stat().st_mtime if p.suffix == ".out" else
                                        p.with_suffix(".out").stat().st_mtime if p.with_suffix(".out").exists()
                                        else p.stat().st_mtime, p.suffix != ".out", p.name))


def readable(text: str) -> str:
    """A log without submitit's bookkeeping lines: what the trainer and the job said."""
    return "".join(line for line in text.splitlines(keepends=True) if not SUBMITIT_NOISE.match(line))


def log_files(log_path: str | None) -> list[Path]:
    """The job's stdout and stderr files (those that exist), stdout first."""
    if not log_path:
        return []
    err = Path(log_path)
    return [p for p in (err.with_suffix(".out"), err) if p.exists()]


def tail(path: Path, limit: int = TAIL_BYTES) -> str:
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(0, size - limit))
        return handle.read().decode("utf-8", errors="replace")


def last_exception(log_path: str | None) -> str | None:
    """The last exception line the job printed (its stderr first), or None."""
    for path in reversed(log_files(log_path)):
        found = last_exception_in(tail(path))
        if found:
            return found
    return None


def last_exception_in(text: str) -> str | None:
    """The last line of `text` that names an exception (not submitit's own bookkeeping), or submitit's word that
    it could not save the job's error, cut to 500 characters and marked "disk full: " when it says so."""
    lines = [line.strip() for line in text.splitlines()]
    for at in range(len(lines) - 1, -1, -1):
        line = lines[at]
        if EXCEPTION_LINE.match(line) and not line.startswith(("submitit", "KeyboardInterrupt")):
            return named(line[:500])
        if line.startswith("submitit") and line.endswith(DUMP_FAILED):
            return named(_unsaved_error(lines[at + 1:])[:500])
    return None


def named(cause: str) -> str:
    """`cause`, led by "disk full: " when it is one, so that a full disk never reads as a crash or a kill."""
    if DISK_FULL.search(cause) and not cause.startswith("disk full"):
        return f"disk full: {cause}"
    return cause


def _unsaved_error(after: list[str]) -> str:
    """The job's error and why submitit could not save it, from the lines after its "Could not dump error:"."""
    error = next((line for line in after if line), "")
    because = next((line[len("because of "):] for line in after if line.startswith("because of ")), "")
    return f"{error or 'the job failed'}" + (f" (submitit could not save it: {because})" if because else "")
