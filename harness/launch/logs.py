"""A job's log files (submitit writes `<job>_log.out` and `<job>_log.err`), and what they say of its end."""

from __future__ import annotations

import re
from pathlib import Path

# the last lines of a log worth reading for the cause of a job's death
TAIL_BYTES = 64 * 1024
# `OSError: [Errno 28] No space left on device`, `harness.trainer.loop.TrainingDiverged: loss is nan ...`
EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Interrupt|Diverged|Exit|Lost|Stopped)\b.*")


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
    """The last line of `text` that names an exception (not submitit's own bookkeeping), cut to 500 characters."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if EXCEPTION_LINE.match(line) and not line.startswith(("submitit", "KeyboardInterrupt")):
            return line[:500]
    return None
