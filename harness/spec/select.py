"""Part of a spec chosen on the command line: other seeds (`--seeds 0-7`), some variants (`--variants a,b`).

`parse_seeds` reads a range `a-b` or a list `0,3,5` (items of a list may be ranges). `expand(..., seeds=...)`
gives those seeds to every variant that does not pin its own (a variant's `seeds:`, e.g. a single teacher run,
stays), so each new seed is a new run with its own hash, and the seeds already in the store are skipped as
always. `only_variants` keeps the runs of the named variants and the runs they need (their teachers and
fine-tuning sources). `spec_runs` is the one way a command turns a spec into its runs.
"""

from __future__ import annotations

import re
from typing import Iterable

from harness.config import MAX_SEED
from harness.spec.errors import SpecError
from harness.spec.expand import MAX_RUNS, PlannedRun, expand, validate_profiles
from harness.spec.load import LoadedSpec

# more seeds than any experiment of this harness needs; a typo such as 0-70000 is refused, not planned
MAX_SEEDS = 1000
_ITEM = re.compile(r"^(\d+)(?:-(\d+))?$")


def parse_seeds(text: str) -> list[int]:
    """`0-7` -> [0, ..., 7]; `0,3,5` -> [0, 3, 5]; `0-2,9`; ValueError (one line) for anything else."""
    seeds: list[int] = []
    items = [item.strip() for item in text.split(",")]
    for item in items:
        match = _ITEM.match(item)
        if not match:
            raise ValueError(f"'{text}' is not a seed range a-b or a list of seeds 0,3,5")
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
        if high < low:
            raise ValueError(f"seed range '{item}' ends before it starts")
        if high > MAX_SEED:
            raise ValueError(f"seed {high} is above the largest seed {MAX_SEED}")
        if high - low + 1 + len(seeds) > MAX_SEEDS:
            raise ValueError(f"'{text}' names more than {MAX_SEEDS} seeds")
        seeds += [s for s in range(low, high + 1) if s not in seeds]
    return seeds


def parse_names(text: str) -> list[str]:
    """`none,hard` -> ['none', 'hard'] (blanks around commas ignored)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ValueError("name at least one variant")
    return names


def only_variants(runs: list[PlannedRun], names: Iterable[str], path: str) -> list[PlannedRun]:
    """The runs of the variants `names`, and every run they depend on, in plan order."""
    names = list(names)
    present = list(dict.fromkeys(r.variant for r in runs))
    unknown = [n for n in names if n not in present]
    if unknown:
        raise SpecError(path, "--variants", f"no variant {', '.join(repr(n) for n in unknown)} in this profile; "
                                            f"its variants: {', '.join(present)}")
    by_hash = {r.hash: r for r in runs}
    keep = {r.hash for r in runs if r.variant in names}
    todo = list(keep)
    while todo:
        for needed in by_hash[todo.pop()].depends_on:
            if needed in by_hash and needed not in keep:
                keep.add(needed)
                todo.append(needed)
    return [r for r in runs if r.hash in keep]


def spec_runs(loaded: LoadedSpec, profile: str | None = None, seeds: list[int] | None = None,
              variants: Iterable[str] | None = None, max_runs: int | None = MAX_RUNS) -> list[PlannedRun]:
    """The runs a command plans for a spec (`run`, its dry run, `seeds`, `weights`): every profile checked first,
    each counted against `max_runs` (`--max-runs`), so that a command refuses what `harness run` refuses; then
    `profile`'s runs, with `seeds` (`--seeds`) instead of the spec's and only `variants` (`--variants`) and the
    runs they need."""
    expanded = validate_profiles(loaded, max_runs)
    runs = (expanded[profile] if seeds is None and profile in expanded
            else expand(loaded, profile, seeds, max_runs=max_runs))
    return runs if variants is None else only_variants(runs, variants, loaded.path)
