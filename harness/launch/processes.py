"""Processes on this machine, named so that a reused pid is never mistaken for them: (host, pid, start time).

A launcher and a local job are identified by the host they run on, their pid and the process's start time,
compared exactly as psutil gave it when it was recorded (clock ticks since boot plus the boot time: a process
started 10 ms later has another), so a process that took the job's pid, however soon after, is never it.
Whether such a process is still alive is then a question this machine answers at once (no heartbeat to wait
for), and a signal is only ever sent to a process proven to be the one that was recorded.
"""

from __future__ import annotations

import os
import signal
import socket
from dataclasses import dataclass
from datetime import datetime

import psutil


@dataclass(frozen=True)
class ProcessRef:
    host: str
    pid: int
    # seconds since the epoch, as psutil.Process.create_time() gives it
    started: float


def hostname() -> str:
    return socket.gethostname()


def this_process() -> ProcessRef:
    return ProcessRef(hostname(), os.getpid(), psutil.Process().create_time())


def reference(pid: int) -> ProcessRef | None:
    """The process with `pid` on this machine as it is now (None when there is none)."""
    try:
        return ProcessRef(hostname(), pid, psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def is_here(ref: ProcessRef) -> bool:
    return ref.host == hostname()


def alive(ref: ProcessRef) -> bool:
    """Whether the recorded process still runs on this machine (not a zombie, not another process with its pid);
    False for a process of another machine, which this one cannot see."""
    process = _process(ref)
    if process is None:
        return False
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _process(ref: ProcessRef) -> psutil.Process | None:
    """The recorded process if it still runs here and is the same one; None otherwise (see `why_not_ours`)."""
    return _examine(ref)[0]


def why_not_ours(ref: ProcessRef) -> str | None:
    """None when `ref` names a live process on this machine; otherwise why it cannot be signalled."""
    return _examine(ref)[1]


def _examine(ref: ProcessRef) -> tuple[psutil.Process | None, str | None]:
    """The recorded process and None, or None and why it is not (elsewhere, gone, its pid reused)."""
    if not is_here(ref):
        return None, f"it runs on {ref.host}, not on this machine"
    try:
        process = psutil.Process(ref.pid)
        started = process.create_time()
    except psutil.NoSuchProcess:
        return None, f"process {ref.pid} is gone"
    if started != ref.started:
        return None, (f"process {ref.pid} is not the job's: it started at {_when(started)}, "
                      f"the job at {_when(ref.started)} (its pid was reused)")
    return process, None


def _when(started: float) -> str:
    """A start time to the hundredth of a second (psutil's resolution): two that differ must read differently."""
    return datetime.fromtimestamp(started).strftime("%Y-%m-%d %H:%M:%S.%f")[:-4]


def stop_tree(ref: ProcessRef, grace_s: float = 5.0) -> bool:
    """End a recorded process and every process it started: SIGINT, then SIGKILL after `grace_s`.

    SIGINT first, so a run can say it was interrupted; but a job started from a non-interactive shell ignores
    SIGINT and submitit's tasks ignore SIGTERM, so what is left after the grace period is killed. Returns
    False, signalling nothing, when `ref` is not a live process of this machine (see `why_not_ours`).
    """
    root = _process(ref)
    if root is None:
        return False
    try:
        # the controller first: once it is gone it cannot start or restart tasks
        tree = [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        return True
    for process in tree:
        _send(process, signal.SIGINT)
    _, left = psutil.wait_procs(tree, timeout=grace_s)
    for process in left:
        _send(process, signal.SIGKILL)
    psutil.wait_procs(left, timeout=grace_s)
    return True


def _send(process: psutil.Process, sig: signal.Signals) -> None:
    try:
        process.send_signal(sig)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        pass
