"""Who holds a SQLite store's write lock: the process to name when a writer has waited on it too long.

In WAL mode SQLite takes its write lock as a POSIX lock on byte 120 of the `-shm` file (the first of the
wal-index lock bytes, WAL_WRITE_LOCK). Linux lists every such lock, with its process, in /proc/locks.
Elsewhere, or when the file is gone, nothing is found and the caller says less.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import psutil

WAL_WRITE_LOCK_BYTE = 120


@dataclass(frozen=True)
class LockHolder:
    pid: int
    command: str  # its command line, shortened; "" when it cannot be read
    stopped: bool  # SIGSTOP, Ctrl-Z, a debugger: it will not let go until it is continued

    def describe(self) -> str:
        what = f"process {self.pid}" + (f" ({self.command})" if self.command else "")
        if self.stopped:
            what += f", which is stopped (Ctrl-Z or SIGSTOP): `kill -CONT {self.pid}` lets it finish"
        return what


def write_lock_holders(database: Path, proc_locks: Path = Path("/proc/locks")) -> list[LockHolder]:
    """The processes holding the write lock of the SQLite file `database` (WAL mode)."""
    try:
        shm = os.stat(f"{database}-shm")
        lines = proc_locks.read_text().splitlines()
    except OSError:
        return []
    device = f"{os.major(shm.st_dev):02x}:{os.minor(shm.st_dev):02x}:{shm.st_ino}"
    pids = []
    for line in lines:
        # "1: POSIX  ADVISORY  WRITE 4242 00:2f:1234 120 120"; a line with "->" is a process waiting for a lock
        fields = line.split()
        if "->" not in fields and len(fields) >= 8 and fields[1:4] == ["POSIX", "ADVISORY", "WRITE"] \
                and fields[5] == device:
            start, end = fields[6], fields[7]
            if start.isdigit() and int(start) <= WAL_WRITE_LOCK_BYTE <= (int(end) if end.isdigit() else 2**63):
                pids.append(int(fields[4]))
    return [_holder(pid) for pid in dict.fromkeys(pids) if pid != os.getpid()]


def _holder(pid: int) -> LockHolder:
    try:
        process = psutil.Process(pid)
        command = " ".join(" ".join(process.cmdline()).split())  # one line: `python -c` code has several
        stopped = process.status() == psutil.STATUS_STOPPED
    except (psutil.Error, OSError):
        return LockHolder(pid, "", False)
    return LockHolder(pid, command if len(command) <= 120 else command[:117] + "...", stopped)
