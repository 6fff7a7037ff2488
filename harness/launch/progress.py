"""The launcher's progress lines: one whenever a run's state or epoch changes."""

from __future__ import annotations

import time
from typing import Any, Callable

from harness.launch.protocols import RunStore
from harness.launch.status import elapsed_s, latest_top1
from harness.spec import PlannedRun
from harness.states import RunState
from harness.store.records import RunRecord
from harness.words import epoch_of

Progress = Callable[[str], None]


class Watcher:
    def __init__(self, store: RunStore, progress: Progress):
        self.store = store
        self.progress = progress
        self.start = time.monotonic()
        self.seen: dict[str, tuple[Any, ...]] = {}

    def event(self, run: PlannedRun, what: str, state: tuple[Any, ...] | None = None) -> None:
        if state is not None:
            self.seen[run.hash] = state
        self.progress(f"{self._clock()}  {run.short}  {what:<28}  {run.describe()}")

    def ended(self, run: PlannedRun, status: str, cause: str | None, log: str | None) -> None:
        """A run that did not complete: `failed` or `cancelled`, the last line of its cause, where its log is."""
        last = cause.strip().splitlines()[-1] if cause and cause.strip() else "no cause recorded"
        self.event(run, f"{status}: {last}" + (f"  (log: {log})" if log else ""))

    def completed(self, run: PlannedRun, record: RunRecord) -> None:
        top1 = record.final.get("top1")
        self.event(run, RunState.COMPLETED.value + (f", top-1 {top1:.1f}%" if top1 is not None else ""))

    def poll(self, run: PlannedRun, record: RunRecord | None = None) -> None:
        """A line when the run's state or epoch changed since the last one (`record`: read already, or None)."""
        record = record or self.store.get_run(run.hash)
        if record is None:
            return
        state = (record.status, record.epoch)
        if self.seen.get(run.hash) == state:
            return
        self.seen[run.hash] = state
        epochs = run.config.schedule.epochs
        where = f"{record.status}" + (f" epoch {epoch_of(record.epoch, epochs)}" if record.epoch is not None else "")
        seconds = elapsed_s(record)
        if seconds is not None:
            where += f" ({int(seconds) // 60}m{int(seconds) % 60:02d}s)"
        top1 = latest_top1(self.store, record)
        self.event(run, where + (f" top-1 {top1:.1f}%" if top1 is not None else ""))

    def _clock(self) -> str:
        s = int(time.monotonic() - self.start)
        return f"[{s // 60:02d}:{s % 60:02d}]"
