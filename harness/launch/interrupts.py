"""Ctrl-C and SIGTERM while a launch waits: both end its jobs, and nothing interrupts that cleanup."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class LaunchInterrupted(Exception):
    """A launch stopped by Ctrl-C or SIGTERM; `lines` say what became of each run it held."""

    def __init__(self, signal_name: str, lines: list[str]):
        self.signal_name = signal_name
        self.lines = lines
        super().__init__(f"launch interrupted ({signal_name})")


@contextlib.contextmanager
def _handling(handlers: dict[signal.Signals, Any]) -> Iterator[None]:
    """`handlers` installed for the block, the previous ones restored after (only the main thread may)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def terminate_as_interrupt() -> contextlib.AbstractContextManager[None]:
    """SIGTERM raises KeyboardInterrupt like Ctrl-C does, so the same cleanup ends the launch's jobs."""
    return _handling({signal.SIGTERM: _interrupt})


def signals_held() -> contextlib.AbstractContextManager[None]:
    """A second Ctrl-C (or SIGTERM) must not cut the cleanup short and leave a run marked running."""
    return _handling({sig: signal.SIG_IGN for sig in STOP_SIGNALS})


def children_ignore_ctrl_c() -> contextlib.AbstractContextManager[None]:
    """Processes started inside this block ignore SIGINT from the terminal (the disposition is inherited).

    A Ctrl-C reaches every process of the terminal's foreground group: without this, each of submitit's local
    job controllers would die on it with a traceback of its own. The launch alone answers Ctrl-C, and ends
    its jobs itself; a job's training process listens to SIGINT again (RunJob), so it can record its end.
    """
    return _handling({signal.SIGINT: signal.SIG_IGN})


def signal_name(exc: KeyboardInterrupt) -> str:
    return str(exc.args[0]) if exc.args and str(exc.args[0]).startswith("SIG") else "SIGINT (Ctrl-C)"
