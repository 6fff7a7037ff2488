"""Processes on this machine, named so that a reused pid is never mistaken for them, nor a process of another
machine for one of this: (host, boot id, PID namespace, pid, start time).
A launcher and a local job are identified by the machine they run on, their pid and the process's start time,
compared exactly as psutil gave it when it was recorded (clock ticks since boot plus the boot time: a process
started 10 ms later has another), so a process that took the job's pid, however soon after, is never it.
A machine is more than its host name: clones of one VM image and containers share host names, and a pid means
something only within one boot (/proc/sys/kernel/random/boot_id) and one PID namespace (/proc/self/ns/pid).
A process recorded on another host, another boot or in another namespace is one this machine cannot see:
not "dead" but unknown, judged only by its lease (harness.launch.liveness). Whether a process this machine can
see is still alive is a question it answers at once (no heartbeat to wait for), and a signal is only ever sent
to a process proven to be the one that was recorded.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psutil

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


@dataclass(frozen=True)
class Machine:
    """Where a process runs, as far as a pid has meaning: host name, boot id and PID namespace (None where this
    system does not tell: such a machine never claims to see another's processes)."""

    host: str
    boot: str | None
    pidns: str | None

    def sees(self, host: str | None, boot: str | None, pidns: str | None) -> bool:
        """Whether a process recorded on (host, boot, pidns) is one this machine can look up by its pid."""
        return (self.boot is not None and self.pidns is not None
                and (host, boot, pidns) == (self.host, self.boot, self.pidns))


@dataclass(frozen=True)
class ProcessRef:
    host: str
    pid: int
    # seconds since the epoch, as psutil.Process.create_time() gives it
    started: float
    boot: str | None = None
    pidns: str | None = None


def hostname() -> str:
    return socket.gethostname()


@functools.lru_cache(maxsize=1)
def _boot_and_namespace() -> tuple[str | None, str | None]:
    # both are fixed for a process's life (a process cannot enter another PID namespace itself)
    try:
        boot: str | None = BOOT_ID.read_text().strip() or None
    except OSError:
        boot = None
    try:
        pidns: str | None = os.readlink("/proc/self/ns/pid")
    except OSError:
        pidns = None
    return boot, pidns


def this_machine() -> Machine:
    return Machine(hostname(), *_boot_and_namespace())


def this_process() -> ProcessRef:
    here = this_machine()
    return ProcessRef(here.host, os.getpid(), psutil.Process().create_time(), here.boot, here.pidns)


def reference(pid: int) -> ProcessRef | None:
    """The process with `pid` on this machine as it is now (None when there is none)."""
    try:
        here = this_machine()
        return ProcessRef(here.host, pid, psutil.Process(pid).create_time(), here.boot, here.pidns)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def is_here(ref: ProcessRef) -> bool:
    return this_machine().sees(ref.host, ref.boot, ref.pidns)


def alive(ref: ProcessRef) -> bool:
    """Whether the recorded process still runs on this machine (not a zombie, not another process with its pid);
    False for a process of another machine, which this one cannot see: ask `is_here` first."""
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
        return None, elsewhere(ref.host, ref.boot, ref.pidns)
    try:
        process = psutil.Process(ref.pid)
        started = process.create_time()
    except psutil.NoSuchProcess:
        return None, f"process {ref.pid} is gone"
    if started != ref.started:
        return None, (f"process {ref.pid} is not the job's: it started at {_when(started)}, "
                      f"the job at {_when(ref.started)} (its pid was reused)")
    return process, None


def elsewhere(host: str | None, boot: str | None, pidns: str | None) -> str:
    """Why a process recorded on (host, boot, pidns) cannot be seen from here, in words."""
    here = this_machine()
    if host != here.host:
        return f"it runs on {host}, not on this machine"
    if boot is None or pidns is None or here.boot is None or here.pidns is None:
        return f"its machine is known only as {host}, which more than one machine may be called"
    if boot != here.boot:
        return f"it ran on {host} before this machine's last reboot"
    return f"it runs in another PID namespace on {host} ({pidns}, here {here.pidns})"


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
