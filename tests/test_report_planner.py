"""The planner's allocation (`harness.report.planner`): the chance of resolving is the t-test's power, and the
seeds it adds are the best allocation within the budget, checked against hand-worked cases and against trying
every allocation of small tables."""

from __future__ import annotations

import itertools
import random

import pytest

from harness.report import significance as sig
from harness.report.planner import Comparison, allocate, chance, cheapest_resolving


def cmp(variant: str, seeds: int, ref_seeds: int, sd: float, paired: bool = False,
        reference: str = "R") -> Comparison:
    return Comparison(variant, "col", variant, reference, seeds, ref_seeds, sd, paired, "test")


def brute_force(comparisons, costs, budget, detect, most=6):
    """The largest expected number resolved over every allocation of up to `most` seeds per variant."""
    names = sorted({c.variant for c in comparisons} | {c.reference for c in comparisons})
    best = -1.0
    for added in itertools.product(range(most + 1), repeat=len(names)):
        plan = dict(zip(names, added))
        if sum(costs[v] * n for v, n in plan.items()) > budget + 1e-9:
            continue
        best = max(best, sum(float(chance(c.seeds + plan[c.variant], c.ref_seeds + plan[c.reference], c.sd, detect,
                                          paired=c.paired)) for c in comparisons))
    return best


@pytest.mark.parametrize("n,paired", [(2, True), (5, True), (12, True), (3, False), (8, False)])
def test_chance_is_the_power_of_the_t_test(n, paired):
    assert float(chance(n, n, 1.3, 1.0, paired=paired)) == pytest.approx(sig.power(n, 1.3, 1.0, paired=paired))
    # paired: the seeds both cells share count; a side of one seed has no interval
    assert float(chance(n + 3, n, 1.3, 1.0, paired=True)) == pytest.approx(sig.power(n, 1.3, 1.0, paired=True))
    assert float(chance(1, n, 1.3, 1.0, paired=paired)) == 0.0


def test_the_cheap_variant_gets_the_budget_when_both_are_equally_unsure():
    # A and B are the same comparison, but a seed of B costs three of A; the reference already has 30 seeds and
    # costs far more than the budget: 3 units buy A three seeds or B one, and A+3 resolves more
    comps = [cmp("A", 2, 30, 1.0), cmp("B", 2, 30, 1.0)]
    plan = allocate(comps, {"A": 1.0, "B": 3.0, "R": 100.0}, budget=3.0, detect=1.0)
    assert plan.added == {"A": 3, "B": 0, "R": 0} and plan.cost == 3.0
    assert plan.chances[0] == pytest.approx(float(chance(5, 30, 1.0, 1.0)))
    assert plan.resolved == pytest.approx(float(chance(5, 30, 1.0, 1.0) + chance(2, 30, 1.0, 1.0)))


def test_seeds_go_to_the_reference_when_it_holds_back_every_comparison():
    # three rows with 10 seeds each against a reference of 2: a reference seed moves all three comparisons
    comps = [cmp(v, 10, 2, 1.0) for v in "ABC"]
    costs = {"A": 1.0, "B": 1.0, "C": 1.0, "R": 1.0}
    plan = allocate(comps, costs, budget=2.0, detect=1.0)
    assert plan.added == {"A": 0, "B": 0, "C": 0, "R": 2}
    assert plan.resolved == pytest.approx(3 * float(chance(10, 4, 1.0, 1.0)))


def test_a_hopeless_comparison_gets_nothing():
    # B's spread is ten times A's: every unit is better spent on A and its reference
    comps = [cmp("A", 2, 2, 0.6), cmp("B", 2, 2, 6.0)]
    plan = allocate(comps, {"A": 1.0, "B": 1.0, "R": 1.0}, budget=4.0, detect=1.0)
    assert plan.added["B"] == 0 and plan.added["A"] + plan.added["R"] == 4
    assert plan.resolved == pytest.approx(brute_force(comps, {"A": 1.0, "B": 1.0, "R": 1.0}, 4.0, 1.0))


def test_ties_go_to_the_narrowest_intervals():
    # both comparisons are already sure to resolve a 50-point difference (chance 1 either way): the tie goes to the
    # seed that narrows an interval most, B's, whose spread is twice C's
    comps = [cmp("B", 2, 40, 0.2), cmp("C", 2, 40, 0.1)]
    plan = allocate(comps, {"B": 1.0, "C": 1.0, "R": 10.0}, budget=1.0, detect=50.0)
    assert plan.chances_now == plan.chances == (1.0, 1.0)
    assert plan.added == {"B": 1, "C": 0, "R": 0}
    assert plan.widths[0] < plan.widths_now[0] and plan.widths[1] == plan.widths_now[1]


@pytest.mark.parametrize("case", range(12))
def test_the_allocation_is_the_best_of_every_allocation(case):
    rng = random.Random(case)
    comps = [cmp(v, rng.randint(1, 4), 0, rng.uniform(0.3, 2.0), paired=rng.random() < 0.5)
             for v in "ABC"[:rng.randint(2, 3)]]
    ref_seeds = rng.randint(1, 4)
    comps = [Comparison(c.row, c.column, c.variant, "R", c.seeds, ref_seeds, c.sd, c.paired, "t") for c in comps]
    costs = {c.variant: rng.choice([0.5, 1.0, 1.5, 2.0]) for c in comps} | {"R": rng.choice([0.5, 1.0, 2.0])}
    budget = rng.choice([1.0, 2.0, 3.0, 4.5])
    plan = allocate(comps, costs, budget, detect=1.0)
    assert plan.cost <= budget + 1e-9
    assert plan.resolved == pytest.approx(brute_force(comps, costs, budget, 1.0, most=int(budget / 0.5)), abs=1e-9)


def test_the_least_budget_that_resolves_something():
    comps = [cmp("A", 2, 2, 0.6), cmp("B", 2, 2, 3.0)]
    costs = {"A": 1.0, "B": 1.0, "R": 1.0}
    cost, seeds = cheapest_resolving(comps, costs, 1.0, power=0.8)
    assert float(chance(2 + seeds.get("A", 0), 2 + seeds.get("R", 0), 0.6, 1.0)) >= 0.8
    assert cost == sum(seeds.values())
    # nothing cheaper reaches 80%
    for a, r in itertools.product(range(12), repeat=2):
        if a + r < cost:
            assert float(chance(2 + a, 2 + r, 0.6, 1.0)) < 0.8
    assert allocate(comps, costs, cost - 1, 1.0).reaching(0.8) == 0
    assert allocate(comps, costs, cost, 1.0).reaching(0.8) >= 1
