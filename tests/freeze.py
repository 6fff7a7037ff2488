"""Freezing a launch (SIGSTOP to its process group) as a laptop lid or a stalled VM would (tests only)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path


def is_stopped(pid: int) -> bool:
    """Whether process `pid` is stopped (state T): SIGSTOP has taken effect, not just been sent."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"


def freeze(launch: subprocess.Popen, db: str) -> None:
    """SIGSTOP the launch: its launcher, its job's controller and the job itself.

    On SQLite, not inside a write transaction: a process stopped there holds the database file's write lock, and
    SQLite has no server to end its transaction, so every other writer would wait until it wakes. (PostgreSQL
    ends such a transaction after half a lease: `test_store_takeover` freezes a job exactly there.)"""
    path = db.removeprefix("sqlite:///") if db.startswith("sqlite:///") else None
    for _ in range(200):
        os.killpg(launch.pid, signal.SIGSTOP)
        if path is None:
            return
        probe = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return
        except sqlite3.OperationalError:  # locked: stopped mid-write; let it finish and try again
            os.killpg(launch.pid, signal.SIGCONT)
            time.sleep(0.05)
        finally:
            probe.close()
    raise AssertionError("the launch never paused outside a write transaction")
