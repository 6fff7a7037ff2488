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
    # runs this launch claimed but another launch took over (this one's claim lapsed): neither done nor failed here
    taken_over: list[PlannedRun] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        done = sum(e.state == "done" for e in self.entries)
        trained = len(self.submitted) - len(self.taken_over)
        lost = f", {len(self.taken_over)} taken over by another launch" if self.taken_over else ""
        return (f"{count(len(self.entries), 'run')}: {done} already done, {trained} trained now, "
                f"{len(self.elsewhere)} in flight elsewhere{lost}, {len(self.failures)} failed")
