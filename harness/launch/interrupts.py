"""Ctrl-C and SIGTERM while a launch waits: both end its jobs, and nothing interrupts that cleanup."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class LaunchInterrupted(Exception):
    """A launch stopped by Ctrl-C or SIGTERM; `lines` say what became of each run it held."""

    def __init__(self, signal_name: str, lines: list[str]):
        self.signal_name = signal_name
        self.lines = lines
        super().__init__(f"launch interrupted ({signal_name})")


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt like Ctrl-C does, so the same cleanup ends the launch's jobs."""
    if not _in_main_thread():
        yield
        return

    def interrupt(signum, frame):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt(signal.Signals(signum).name)

    before = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """A second Ctrl-C (or SIGTERM) must not cut the cleanup short and leave a run marked running."""
    if not _in_main_thread():
        yield
        return
    before = {sig: signal.signal(sig, signal.SIG_IGN) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def children_ignore_ctrl_c() -> Iterator[None]:
    """Processes started inside this block ignore SIGINT from the terminal (the disposition is inherited).

    A Ctrl-C reaches every process of the terminal's foreground group: without this, each of submitit's local
    job controllers would die on it with a traceback of its own. The launch alone answers Ctrl-C, and ends
    its jobs itself; a job's training process listens to SIGINT again (RunJob), so it can record its end.
    """
    if not _in_main_thread():
        yield
        return
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def signal_name(exc: KeyboardInterrupt) -> str:
    return str(exc.args[0]) if exc.args and str(exc.args[0]).startswith("SIG") else "SIGINT (Ctrl-C)"
