"""What a launch reports back: the plan, what it submitted, what failed, what another launch holds."""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.launch.plan import PlanEntry
from harness.spec import PlannedRun
from harness.words import count


@dataclass
class Failure:
    run: PlannedRun
    error: str
    log_path: str | None


@dataclass
class LaunchResult:
    entries: list[PlanEntry]
    submitted: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    # runs alive under another launch (or claimed by one a moment ago): (run, why), never submitted here
    elsewhere: list[tuple[PlannedRun, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        done = sum(e.state == "done" for e in self.entries)
        return (f"{count(len(self.entries), 'run')}: {done} already done, {len(self.submitted)} trained now, "
                f"{len(self.elsewhere)} in flight elsewhere, {len(self.failures)} failed")
