"""What the report reads: finished runs from the results store, grouped by where they come from.

The report never looks at running jobs or files: only the store (`harness.store`). Runs are grouped by
*origin*: our paper-scale runs, our runs of one profile (`quick`, `small`...), or results imported from
elsewhere (`harness import --source NAME`, e.g. the paper's own numbers). One table cell only ever holds
runs of one origin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from harness.paths import default_db_url
from harness.spec.reader import YamlError, parse
from harness.states import RunState
from harness.store import open_store
from harness.store.where import All, Compare

# a special --profile value: our runs without a profile
PAPER_SCALE = "paper-scale"


@dataclass(frozen=True, order=True)
class Origin:
    """Where a run comes from: (source, profile); source None means trained by this harness."""

    source: str | None
    profile: str | None

    @property
    def label(self) -> str:
        scale = f"profile '{self.profile}'" if self.profile else "paper scale"
        if self.source is None:
            return f"our runs, {scale}"
        return f"imported from '{self.source}'" + (f", profile '{self.profile}'" if self.profile else "")

    def rank(self) -> tuple[int, str]:
        """Lower is preferred: our paper-scale runs, then our profiles, then imported results."""
        if self.source is None:
            return (0 if self.profile is None else 1, self.profile or "")
        return (2, f"{self.source}:{self.profile or ''}")


def origin_of(run: Any) -> Origin:
    return Origin(getattr(run, "source", None), run.profile)


@dataclass
class RunSet:
    """Finished runs and lazy access to their stored per-epoch metrics and predictions.

    `RunSet(None, store)` reads the store's finished runs only when `runs` is first read: a table of one spec
    reads that spec's runs (`in_specs`), so its cost does not grow with the rest of the store."""

    _runs: list[Any] | None
    store: Any = None
    _predictions: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def predictions(self, run_hash: str) -> dict[str, np.ndarray]:
        if run_hash not in self._predictions:
            self._predictions[run_hash] = dict(self.store.predictions(run_hash)) if self.store is not None else {}
        return self._predictions[run_hash]

    def metrics(self, hashes: Sequence[str]) -> list[tuple[str, int, str, float]]:
        if self.store is None or not hashes:
            return []
        return list(self.store.metrics(list(hashes)))

    _spec_runs: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def runs(self) -> list[Any]:
        """Every finished run (of the store, read on first use; or those given)."""
        if self._runs is None:
            self._runs = [r for r in self.store.runs() if finished(r)] if self.store is not None else []
        return self._runs

    def in_specs(self, specs: Iterable[str] | None) -> list[Any]:
        """Finished runs of these specs, each described by its membership in that spec (a run shared by two
        specs, e.g. one DeiT-B run in model_size and transfer, carries each spec's variant name there)."""
        specs = list(specs or [])
        if not specs:
            return list(self.runs)
        out: dict[str, Any] = {}
        for spec in specs:
            if spec not in self._spec_runs:
                if self.store is not None:
                    self._spec_runs[spec] = [r for r in self.store.runs(spec=spec) if finished(r)]
                else:
                    self._spec_runs[spec] = [r for r in self.runs if r.spec == spec]
            for run in self._spec_runs[spec]:
                out.setdefault(run.hash, run)
        return list(out.values())

    def imported_without_spec(self) -> list[Any]:
        """Finished imported results that name no spec (they count for every table): read by a filter in the
        database, not by reading every run."""
        if self._runs is None and self.store is not None:
            return [r for r in self.store.runs(where=All((Compare("spec", "==", None), Compare("source", "!=", None))))
                    if finished(r)]
        return [r for r in self.runs if getattr(r, "source", None) is not None and not r.spec]

    def spec_names(self) -> list[str]:
        """Names of the specs (experiments) with runs of ours."""
        if self.store is not None:
            names = {e.name for e in self.store.experiments()}
            return sorted(n for n in names if self.in_specs([n]) and any(
                getattr(r, "source", None) is None for r in self.in_specs([n])))
        return sorted({r.spec for r in self.runs if r.spec and getattr(r, "source", None) is None})


def finished(run: Any) -> bool:
    """A run whose final metrics count: completed, or an imported result."""
    return run.status == RunState.COMPLETED or (getattr(run, "source", None) is not None and bool(run.final))


def load(db: str | None = None, store: Any = None) -> RunSet:
    """Every finished run in the store at `db` (default: `harness.paths.default_db_url()`), read when first needed."""
    if store is None:
        store = open_store(db or default_db_url())
    return RunSet(None, store)


def parse_profile(profile: str | None) -> tuple[bool, str | None]:
    """(whether a profile was chosen, which): `paper-scale` (or `none`) chooses runs without a profile."""
    if profile is None:
        return False, None
    if profile in (PAPER_SCALE, "none", ""):
        return True, None
    return True, profile


def check_profile(runset: RunSet, profile: str | None) -> None:
    """LookupError (one line, with the profiles there are) when `profile` is neither a profile of a run in the
    store nor one that a stored spec defines: a misspelt profile must not look like a table nobody filled."""
    chosen, wanted = parse_profile(profile)
    if not chosen:
        return
    if runset.store is not None:
        if runset.store.runs(profile=wanted or ""):
            return
        everything = runset.store.runs()
        defined = set().union(*(_spec_profiles(e.spec_text) for e in runset.store.experiments()))
    else:
        everything, defined = runset.runs, set()
    if any(r.profile == wanted for r in everything) or wanted in defined:
        return  # a real profile that has not filled this store yet: its table is rightly empty
    known = sorted({r.profile or PAPER_SCALE for r in everything} | defined)
    raise LookupError(f"no run of profile '{profile}' in the store; its profiles: {', '.join(known) or 'none'}")


def defined_profiles(runset: RunSet) -> dict[str, set[str]]:
    """The profiles each stored spec defines, by spec name (a spec of no profiles has no paper-scale variant
    of itself: its runs are simply its runs)."""
    if runset.store is None:
        return {}
    return {e.name: _spec_profiles(e.spec_text) for e in runset.store.experiments()}


def _spec_profiles(text: str) -> set[str]:
    """The profiles a stored spec's text defines (none when it does not parse)."""
    try:
        data = parse(text) if text else None
    except YamlError:
        return set()
    profiles = data.get("profiles") if isinstance(data, dict) else None
    return {str(name) for name in profiles} if isinstance(profiles, dict) else set()
