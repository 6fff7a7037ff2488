"""Which seeds to add to which variants so that a budget resolves the most comparisons of an ablation table.

    from harness.report.planner import Comparison, allocate
    plan = allocate(comparisons, {"hard": 0.4, "none": 0.4}, budget=2.0, detect=0.5)

A *comparison* is one cell of a table against the reference row's cell of the same column (`harness seeds`):
it has the seeds of both cells, the per-seed standard deviation the store shows (of the per-seed differences when
the cells pair by seed, pooled otherwise; a prior where a cell has fewer than two seeds, said as such), and the
variants of the spec whose seeds fill each side. Seeds are added per variant (`harness run --seeds --variants`),
so a variant's new seed adds a run to every cell it fills, and a reference variant's new seed helps every
comparison of its column.

The chance that a comparison resolves a true difference of `detect` points is the power of its t-test at level
`alpha` (`chance`, the noncentral t of `significance.power`): paired by seed on the seeds both cells share (the
planned seeds extend both cells over the same seed range), else two cells of n₁ and n₂ seeds (ν = n₁ + n₂ − 2,
λ = δ / (σ·√(1/n₁ + 1/n₂))). `allocate` maximizes the expected number of comparisons resolved, Σ chance, within
the budget (ties: the largest total shrink of the expected interval widths, then the lowest cost). It is exact:
for each number of seeds added to the reference variants (enumerated), the other variants' choices are
independent of each other, and a knapsack over them keeps every (cost, value) that no cheaper choice beats.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
from scipy import stats

from harness.report import significance as sig

# seeds added to one variant at most (a plan beyond this is a different experiment, not more seeds)
MAX_ADDED = 64
# an interval that does not exist yet counts as this wide when intervals are compared (ties only)
NO_WIDTH = 1e6
_EPS = 1e-9


@dataclass(frozen=True)
class Comparison:
    """One compared cell of a table: `variant`'s cell against `reference`'s cell of the same column."""

    row: str
    column: str
    variant: str
    reference: str
    seeds: int
    ref_seeds: int
    # per-seed standard deviation the plan uses; `basis` says where it comes from (measured or a prior)
    sd: float
    paired: bool
    basis: str
    # width of the interval the store shows now (NaN: none yet)
    width: float = math.nan


def chance(n_cell: np.ndarray | int, n_ref: np.ndarray | int, sd: float, detect: float,
           alpha: float = 1 - sig.CONFIDENCE, paired: bool = False) -> np.ndarray:
    """Power of the comparison's two-sided t-test at level `alpha` to find a true difference `detect` (0 where
    there is no interval: fewer than two seeds)."""
    n1, n2 = np.broadcast_arrays(np.asarray(n_cell, dtype=float), np.asarray(n_ref, dtype=float))
    if paired:
        n = np.minimum(n1, n2)
        dof = n - 1
        ncp = detect * np.sqrt(np.maximum(n, 1)) / sd
        ok = n >= 2
    else:
        dof = n1 + n2 - 2
        ncp = detect / (sd * np.sqrt(1 / np.maximum(n1, 1) + 1 / np.maximum(n2, 1)))
        ok = (n1 >= 2) & (n2 >= 2)
    dof = np.maximum(dof, 1)
    crit = stats.t.ppf(1 - alpha / 2, dof)
    out = stats.nct.sf(crit, dof, ncp) + stats.nct.cdf(-crit, dof, ncp)
    return np.where(ok, out, 0.0)


def width(n_cell: np.ndarray | int, n_ref: np.ndarray | int, sd: float, alpha: float = 1 - sig.CONFIDENCE,
          paired: bool = False) -> np.ndarray:
    """The expected width of the comparison's interval (inf where there is none) at a per-seed spread `sd`."""
    n1, n2 = np.broadcast_arrays(np.asarray(n_cell, dtype=float), np.asarray(n_ref, dtype=float))
    if paired:
        n = np.minimum(n1, n2)
        ok, dof, scale = n >= 2, n - 1, sd / np.sqrt(np.maximum(n, 1))
    else:
        ok, dof = (n1 >= 2) & (n2 >= 2), n1 + n2 - 2
        scale = sd * np.sqrt(1 / np.maximum(n1, 1) + 1 / np.maximum(n2, 1))
    half = stats.t.ppf(1 - alpha / 2, np.maximum(dof, 1)) * scale
    return np.where(ok, 2 * half, np.inf)


@dataclass(frozen=True)
class Allocation:
    """Seeds to add per variant, what they cost, and what the table expects of them."""

    added: dict[str, int]
    cost: float
    # expected comparisons resolved (Σ chance), before and after
    resolved_now: float
    resolved: float
    # per comparison (in the order given): chance now and planned, expected width now and planned
    chances_now: tuple[float, ...] = field(default=())
    chances: tuple[float, ...] = field(default=())
    widths_now: tuple[float, ...] = field(default=())
    widths: tuple[float, ...] = field(default=())

    def reaching(self, power: float) -> int:
        """Comparisons whose planned chance of resolving reaches `power`."""
        return sum(c >= power - _EPS for c in self.chances)


def _grid(c: Comparison, k_max: int, r_max: int, detect: float, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """chance and capped width of `c` with k seeds added to its variant (rows) and r to its reference (columns)."""
    k = np.arange(k_max + 1)[:, None] + c.seeds
    r = np.arange(r_max + 1)[None, :] + c.ref_seeds
    return (chance(k, r, c.sd, detect, alpha, c.paired),
            np.minimum(width(k, r, c.sd, alpha, c.paired), NO_WIDTH))


def _most_seeds(cost: float, budget: float) -> int:
    """Seeds of one variant the budget could pay for (a variant that cannot take more seeds costs inf)."""
    if budget < 0:
        return 0
    return MAX_ADDED if cost <= 0 else max(0, min(MAX_ADDED, int(budget / cost + _EPS)))


def _spent(seed_cost: Mapping[str, float], added: Mapping[str, int]) -> float:
    return sum(seed_cost[v] * n for v, n in added.items() if n)


def allocate(comparisons: Sequence[Comparison], seed_cost: Mapping[str, float], budget: float, detect: float,
             alpha: float = 1 - sig.CONFIDENCE) -> Allocation:
    """The seeds to add per variant (`seed_cost`: the cost of one more seed of each variant) that maximize the
    expected number of comparisons resolved at `detect` within `budget` (see the module docstring)."""
    refs = sorted({c.reference for c in comparisons})
    others = sorted({c.variant for c in comparisons} - set(refs))
    r_max = {v: _most_seeds(seed_cost[v], budget) for v in refs}
    k_max = {v: _most_seeds(seed_cost[v], budget) for v in others}
    grids = [_grid(c, k_max.get(c.variant, 0), r_max[c.reference], detect, alpha) for c in comparisons]

    best: tuple[tuple[float, float, float], dict[str, int]] | None = None
    for ref_added in itertools.product(*(range(r_max[v] + 1) for v in refs)):
        by_ref = dict(zip(refs, ref_added))
        spent = _spent(seed_cost, by_ref)
        if spent > budget + _EPS:
            continue
        # per variant: (value, -width) of its comparisons for each k, given the reference's seeds
        options: dict[str, list[tuple[float, float]]] = {v: [(0.0, 0.0)] * (k_max[v] + 1) for v in others}
        fixed = (0.0, 0.0)
        for c, (ch, wd) in zip(comparisons, grids):
            r = by_ref[c.reference]
            if c.variant in options:
                options[c.variant] = [(a + float(ch[k, r]), b - float(wd[k, r]))
                                      for k, (a, b) in enumerate(options[c.variant])]
            else:  # a comparison of two reference variants: only the references' seeds move it
                fixed = (fixed[0] + float(ch[0, r]), fixed[1] - float(wd[0, r]))
        # knapsack: states (cost, value, -width, choice), pruned to those no cheaper state beats
        states: list[tuple[float, float, float, tuple[int, ...]]] = [(spent, fixed[0], fixed[1], ())]
        for v in others:
            grown = [(cost + (k and k * seed_cost[v]), value + a, neg + b, choice + (k,))
                     for cost, value, neg, choice in states for k, (a, b) in enumerate(options[v])
                     if cost + (k and k * seed_cost[v]) <= budget + _EPS]
            states = _frontier(grown)
        for cost, value, neg, choice in states:
            key = (round(value, 9), round(neg, 6), -cost)
            if best is None or key > best[0]:
                best = (key, {**by_ref, **dict(zip(others, choice))})
    added = best[1] if best is not None else {v: 0 for v in refs + others}
    return _allocation(comparisons, added, seed_cost, grids)


def _frontier(states: list[tuple[float, float, float, tuple[int, ...]]]) -> list[tuple[float, float, float,
                                                                                       tuple[int, ...]]]:
    """The states no cheaper (or equally cheap) state beats in (value, -width)."""
    states.sort(key=lambda s: (s[0], -round(s[1], 9), -s[2]))
    kept: list[tuple[float, float, float, tuple[int, ...]]] = []
    top: tuple[float, float] | None = None
    for s in states:
        key = (round(s[1], 9), round(s[2], 6))
        if top is None or key > top:
            kept.append(s)
            top = key
    return kept


def _allocation(comparisons: Sequence[Comparison], added: dict[str, int], seed_cost: Mapping[str, float],
                grids: list[tuple[np.ndarray, np.ndarray]]) -> Allocation:
    now, planned, w_now, w_planned = [], [], [], []
    for c, (ch, wd) in zip(comparisons, grids):
        k, r = added.get(c.variant, 0) if c.variant != c.reference else 0, added.get(c.reference, 0)
        now.append(float(ch[0, 0]))
        planned.append(float(ch[k, r]))
        w_now.append(float(wd[0, 0]) if wd[0, 0] < NO_WIDTH else math.inf)
        w_planned.append(float(wd[k, r]) if wd[k, r] < NO_WIDTH else math.inf)
    cost = _spent(seed_cost, added)
    return Allocation({v: n for v, n in added.items()}, cost, sum(now), sum(planned), tuple(now), tuple(planned),
                      tuple(w_now), tuple(w_planned))


def cheapest_resolving(comparisons: Sequence[Comparison], seed_cost: Mapping[str, float], detect: float,
                       power: float = 0.8, alpha: float = 1 - sig.CONFIDENCE) -> tuple[float, dict[str, int]] | None:
    """The least cost that gives one comparison a `power` chance of resolving `detect`, and the seeds it adds
    (None: no comparison gets there with `MAX_ADDED` seeds per variant)."""
    found: tuple[float, dict[str, int]] | None = None
    for c in comparisons:
        ch, _ = _grid(c, MAX_ADDED, MAX_ADDED, detect, alpha)
        for k, r in zip(*np.nonzero(ch >= power)):
            cost = _spent(seed_cost, {c.variant: int(k), c.reference: int(r)})
            if math.isfinite(cost) and (found is None or cost < found[0] - _EPS):
                found = (float(cost), {v: n for v, n in ((c.variant, int(k)), (c.reference, int(r))) if n})
    return found
