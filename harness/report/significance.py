"""Is a difference real? Each row's difference to the table's reference row, with a 95% confidence interval over
seeds, and how many seeds a difference of a given size needs.

An ablation table names its reference row in `reports/tables/tableN.yaml` (`reference:`; Table 2: the DeiT-B
teacher, Table 3: no distillation, Table 8: the baseline, Table 10: the 224 run). `difference` compares one cell's
per-seed values with the reference cell of the same column:

- paired by seed (`scipy.stats.ttest_rel`) when both cells hold the same seeds, one value per seed, two or more:
  runs of one seed share their initialisation and data order, so pairing removes that part of the spread;
- Welch's interval (`scipy.stats.ttest_ind(equal_var=False)`) otherwise, when each cell has two or more values;
- no interval when a side has a single value ("n = 1: no interval").

A difference whose interval excludes zero is *marked*. Where the seeds show no spread at all (the same difference
on every seed when paired, or every value the same on both sides), there is no interval and no mark: a spread of
zero over a few seeds says nothing about the spread of the next seed (accuracies on a small validation set move in
steps, so equal differences happen), and a t interval there is [Δ, Δ] out of a 0/0. The test then reads
"spread 0 over n seeds" (`zero_spread`), and the seeds such a cell needs are unknown (`seeds_needed` returns None).

`seeds_needed` turns a stored spread into the number of seeds a difference needs (see its docstring).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
PAIRED, WELCH, NO_INTERVAL, REFERENCE = "paired", "welch", "n = 1: no interval", "reference"
# the start of the test of a cell whose seeds show no spread (see `zero_spread`)
ZERO_SPREAD = "spread 0 over"
# seeds_needed gives up beyond this many seeds per cell
MAX_SEEDS = 1000

# (seed, value) per run of a cell
Samples = Sequence[tuple[int | None, float]]


@dataclass(frozen=True)
class Difference:
    """A cell's mean minus the reference cell's mean, with its interval (NaN where there is none)."""

    delta: float
    low: float
    high: float
    # PAIRED, WELCH, NO_INTERVAL, REFERENCE, `zero_spread(...)`, or "" for an empty cell
    test: str
    # the cell's standard deviation for a seed-count plan: of the per-seed differences when paired, else pooled
    sd: float = math.nan

    @property
    def marked(self) -> bool:
        """The interval excludes zero."""
        return self.low > 0 or self.high < 0


def _values(samples: Samples) -> np.ndarray:
    return np.asarray([v for _, v in samples if not math.isnan(v)], dtype=float)


def _by_seed(samples: Samples) -> dict[int, float] | None:
    """{seed: value}, or None when a seed is missing or appears twice (no pairing possible)."""
    out: dict[int, float] = {}
    for seed, value in samples:
        if seed is None or seed in out or math.isnan(value):
            return None
        out[seed] = value
    return out


def _flat(x: np.ndarray) -> bool:
    return bool(np.ptp(x) <= 1e-12 * max(1.0, float(np.abs(x).max())))


def zero_spread(*seeds: int) -> str:
    """The test of a cell whose seeds show no spread: "spread 0 over 3 seeds" (paired), "... over 2 and 3 seeds"."""
    return f"{ZERO_SPREAD} {' and '.join(str(n) for n in seeds)} seeds"


def is_zero_spread(test: str) -> bool:
    return isinstance(test, str) and test.startswith(ZERO_SPREAD)


def _pooled_sd(a: np.ndarray, b: np.ndarray) -> float:
    dof = len(a) + len(b) - 2
    if dof < 1:
        return math.nan
    ss = ((a - a.mean()) ** 2).sum() + ((b - b.mean()) ** 2).sum()
    return float(math.sqrt(ss / dof))


def difference(cell: Samples, reference: Samples, confidence: float = CONFIDENCE) -> Difference:
    """`cell` − `reference` (means over seeds) with its `confidence` interval; see the module docstring."""
    a, b = _values(cell), _values(reference)
    if not len(a) or not len(b):
        return Difference(math.nan, math.nan, math.nan, "")
    delta = float(a.mean() - b.mean())
    mine, theirs = _by_seed(cell), _by_seed(reference)
    if mine is not None and theirs is not None and mine.keys() == theirs.keys() and len(mine) >= 2:
        seeds = sorted(mine)
        x, y = np.array([mine[s] for s in seeds]), np.array([theirs[s] for s in seeds])
        sd = float((x - y).std(ddof=1))
        if _flat(x - y):
            return Difference(delta, math.nan, math.nan, zero_spread(len(seeds)), 0.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ci = stats.ttest_rel(x, y).confidence_interval(confidence)
        return Difference(delta, float(ci.low), float(ci.high), PAIRED, sd)
    sd = _pooled_sd(a, b)
    if len(a) < 2 or len(b) < 2:
        return Difference(delta, math.nan, math.nan, NO_INTERVAL, sd)
    if _flat(a) and _flat(b):
        return Difference(delta, math.nan, math.nan, zero_spread(len(a), len(b)), 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(confidence)
    return Difference(delta, float(ci.low), float(ci.high), WELCH, sd)


def power(n: int, sd: float, detect: float, alpha: float = 1 - CONFIDENCE, paired: bool = True) -> float:
    """Probability that a two-sided t-test at level `alpha` on `n` seeds finds a true difference `detect`."""
    if paired:
        dof, ncp = n - 1, detect * math.sqrt(n) / sd
    else:
        dof, ncp = 2 * n - 2, detect / (sd * math.sqrt(2.0 / n))
    crit = stats.t.ppf(1 - alpha / 2, dof)
    return float(stats.nct.sf(crit, dof, ncp) + stats.nct.cdf(-crit, dof, ncp))


def seeds_needed(sd: float, detect: float, alpha: float = 1 - CONFIDENCE, target_power: float = 0.8,
                 paired: bool = True) -> int | None:
    """The fewest seeds per cell with which a difference of `detect` points is found at confidence 1 − `alpha`
    with probability `target_power`, given the per-seed standard deviation `sd` (None: more than MAX_SEEDS, no
    spread measured, or a measured spread of zero, which does not tell how far the next seeds will spread:
    unknown, not 2).

    The exact power of the two-sided t-test, from the noncentral t distribution (scipy.stats.nct):

        power(n) = P(T' > t) + P(T' < −t),   t = t_{1−α/2, ν},   T' ~ noncentral t(ν, λ)

    paired by seed (`sd` of the per-seed differences): ν = n − 1,  λ = δ·√n / σ_d;
    two independent cells of n seeds (`sd` pooled):     ν = 2n − 2, λ = δ / (σ·√(2/n)).

    The answer is the smallest n ≥ 2 (an interval needs two) with power(n) ≥ `target_power`. For large n it
    approaches the normal formula n ≈ (z_{1−α/2} + z_{power})² σ² / δ² (paired; twice that unpaired).
    """
    if math.isnan(sd) or sd <= 0 or detect <= 0:
        return None
    for n in range(2, MAX_SEEDS + 1):
        if power(n, sd, detect, alpha, paired) >= target_power:
            return n
    return None
