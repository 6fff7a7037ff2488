"""Does `harness plan` resolve more comparisons than adding seeds uniformly, at the same budget?

    python benchmarks/planner.py [--tables 200] [--budgets 8,16,32] [--detect 1.0] [--seed 0]

Simulates ablation tables with known true effects and per-seed spreads: a reference row and five compared cells
(Table 3's shape: four variants, the distillation-token variant filling three cells), each cell holding 3 seeds
to start with (the small profile's count). Two kinds of table:

- `small`: the small profile's measured spreads (README: per-seed std 1.4 for no distillation, 2.1 usual,
  0.8 hard, 0.5 / 0.7 / 0.6 for the three token heads), each scaled by a random factor in [0.7, 1.4];
- `mixed`: spreads drawn log-uniformly from 0.3 to 3 points, as tables of other models and datasets have.

A cell's true effect is 0 with probability 0.4, else ±U(0.75, 1.25)·detect: the size the plan is asked to
resolve (with effects spread wider, a share of them is resolved by any allocation and the ratios below shrink). A seed costs 1 unit for a variant
without a teacher and 1.3 with one (the teacher's forward passes). Per budget (in those units), each strategy
adds seeds knowing only the first 3 seeds of every cell (their spreads, as the store would show them):

- `planner`: `harness.report.planner.allocate` (what `harness plan` prints);
- `uniform`: one seed to every variant in turn, reference included, while the next one fits the budget;
- `needed`: each cell's "seeds needed" (`harness seeds`: 80% power at `detect`) for it and the reference, cells
  taken cheapest-first, each funded only if what it needs still fits.

Then the new seeds are drawn from the truth and every comparison is tested as `harness report` does (Welch's
95% interval over all seeds of both cells). A comparison is *correctly resolved* when its interval excludes 0 and
the effect is real and of that sign; *wrongly resolved* when it excludes 0 and the effect is 0 or of the other
sign. Prints, per kind and budget, the mean of both over the tables, the false-positive rate among null
comparisons (nominal 5%), and the planner's ratio to uniform. Target: planner >= 1.3x uniform in comparisons
correctly resolved, at no higher false-positive rate.

Smallest run: python benchmarks/planner.py --tables 10 --budgets 8
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.report import significance as sig  # noqa: E402
from harness.report.planner import Comparison, allocate  # noqa: E402

START_SEEDS = 3
# |true effect| of a real difference, in units of --detect
LOW, HIGH = 0.75, 1.25
# (variant, cell): Table 3's compared cells; the reference is "none"
CELLS = [("usual", "usual"), ("hard", "hard"), ("token", "cls"), ("token", "dist"), ("token", "both")]
REFERENCE = "none"
COST = {"none": 1.0, "usual": 1.3, "hard": 1.3, "token": 1.3}
# the small profile's per-seed std (README, Table 3 at 3 and 8 seeds)
SMALL_SD = {"none": 1.4, "usual": 2.1, "hard": 0.8, "cls": 0.5, "dist": 0.7, "both": 0.6}


@dataclass
class Table:
    sd: dict[str, float]       # per cell (and the reference)
    effect: dict[str, float]   # per compared cell
    values: dict[str, list[float]]


def make_table(kind: str, detect: float, rng: np.random.Generator) -> Table:
    cells = [REFERENCE] + [c for _, c in CELLS]
    if kind == "small":
        sd = {c: SMALL_SD[c] * rng.uniform(0.7, 1.4) for c in cells}
    else:
        sd = {c: float(math.exp(rng.uniform(math.log(0.3), math.log(3.0)))) for c in cells}
    effect = {c: 0.0 if rng.random() < 0.4 else float(rng.choice([-1, 1]) * rng.uniform(LOW, HIGH) * detect)
              for _, c in CELLS}
    values = {c: list(rng.normal(effect.get(c, 0.0), sd[c], START_SEEDS)) for c in cells}
    return Table(sd, effect, values)


def comparisons(table: Table) -> list[Comparison]:
    """What the store shows after the first seeds: pooled per-seed spread of each cell and the reference."""
    ref = np.asarray(table.values[REFERENCE])
    out = []
    for variant, cell in CELLS:
        mine = np.asarray(table.values[cell])
        dof = len(mine) + len(ref) - 2
        pooled = math.sqrt((((mine - mine.mean()) ** 2).sum() + ((ref - ref.mean()) ** 2).sum()) / dof)
        out.append(Comparison(cell, "c", variant, REFERENCE, len(mine), len(ref), pooled, False, "start"))
    return out


def uniform(budget: float) -> dict[str, int]:
    added = {v: 0 for v in COST}
    spent, moved = 0.0, True
    while moved:
        moved = False
        for v in COST:
            if spent + COST[v] <= budget + 1e-9:
                added[v] += 1
                spent += COST[v]
                moved = True
    return added


def needed(comps: list[Comparison], budget: float, detect: float) -> dict[str, int]:
    """Each cell's seeds needed, cheapest cell first, funded whole or not at all."""
    added = {v: 0 for v in COST}
    wants = []
    for c in comps:
        n = sig.seeds_needed(c.sd, detect, paired=False)
        if n is not None:
            wants.append((c, n))
    spent = 0.0

    def extra(c: Comparison, n: int) -> float:
        return (max(0, n - c.seeds - added[c.variant]) * COST[c.variant]
                + max(0, n - c.ref_seeds - added[REFERENCE]) * COST[REFERENCE])

    for c, n in sorted(wants, key=lambda w: extra(*w)):
        cost = extra(c, n)
        if spent + cost <= budget + 1e-9:
            added[c.variant] = max(added[c.variant], n - c.seeds)
            added[REFERENCE] = max(added[REFERENCE], n - c.ref_seeds)
            spent += cost
    return added


def outcome(table: Table, added: dict[str, int], rng: np.random.Generator) -> tuple[int, int, int]:
    """(correctly resolved, wrongly resolved, null comparisons resolved) after drawing the added seeds."""
    values = {c: list(v) for c, v in table.values.items()}
    variant_of = {cell: variant for variant, cell in CELLS} | {REFERENCE: REFERENCE}
    for cell in values:
        values[cell] += list(rng.normal(table.effect.get(cell, 0.0), table.sd[cell], added[variant_of[cell]]))
    ref = [(None, v) for v in values[REFERENCE]]
    right = wrong = false_pos = 0
    for _, cell in CELLS:
        d = sig.difference([(None, v) for v in values[cell]], ref)
        if not d.marked:
            continue
        truth = table.effect[cell]
        if truth != 0 and math.copysign(1, truth) == math.copysign(1, d.delta):
            right += 1
        else:
            wrong += 1
            false_pos += truth == 0
    return right, wrong, false_pos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=200, help="simulated tables per kind and budget")
    parser.add_argument("--budgets", default="8,16,32", help="budgets in seed-cost units (a seed without teacher: 1)")
    parser.add_argument("--detect", type=float, default=1.0, help="difference to resolve, in top-1 points")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    budgets = [float(b) for b in args.budgets.split(",")]

    print(f"{args.tables} simulated tables per kind and budget; 5 comparisons each, {START_SEEDS} seeds to start, "
          f"detect {args.detect:g}; mean correctly / wrongly resolved per table; false positives among nulls")
    print(f"{'kind':<6} {'budget':>6}  {'planner':>15}  {'uniform':>15}  {'needed':>15}  {'FP% p/u/n':>14}  ratio")
    worst = math.inf
    for kind in ("small", "mixed"):
        for budget in budgets:
            rng = np.random.default_rng([args.seed, int(budget * 10), kind == "small"])
            totals = {name: np.zeros(3) for name in ("planner", "uniform", "needed")}
            nulls = 0
            for _ in range(args.tables):
                table = make_table(kind, args.detect, rng)
                nulls += sum(e == 0 for e in table.effect.values())
                comps = comparisons(table)
                plans = {"planner": allocate(comps, COST, budget, args.detect).added, "uniform": uniform(budget),
                         "needed": needed(comps, budget, args.detect)}
                draw = int(rng.integers(2 ** 31))
                for name, added in plans.items():
                    assert sum(COST[v] * n for v, n in added.items()) <= budget + 1e-9, (name, added)
                    # the same draws for every strategy: the seeds they share get the same values
                    totals[name] += outcome(table, added, np.random.default_rng(draw))
            mean = {k: v / args.tables for k, v in totals.items()}
            fp = "/".join(f"{100 * totals[k][2] / max(nulls, 1):.1f}" for k in ("planner", "uniform", "needed"))
            ratio = mean["planner"][0] / mean["uniform"][0] if mean["uniform"][0] else math.inf
            worst = min(worst, ratio)
            print(f"{kind:<6} {budget:>6g}  " + "  ".join(f"{m[0]:>6.2f} / {m[1]:>5.2f}" for m in mean.values())
                  + f"  {fp:>14}  {ratio:.2f}x")
    print(f"planner / uniform, comparisons correctly resolved: at least {worst:.2f}x (target 1.3x)")


if __name__ == "__main__":
    main()
