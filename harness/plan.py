"""`harness plan`: the seeds a budget should add, to which variants of a spec, to resolve the most comparisons.

    from harness.plan import make_plan
    plan = make_plan(load_spec(path), store, table=3, budget=2.0, unit="core-h", detect=0.5, profile="small")
    print(format_plan(plan))

It joins three parts that know nothing of each other: the table's comparisons and their stored spread
(`harness.report`), what one more seed of each variant costs (`harness.launch.estimate`: the store's measured
speed of that configuration on the target, else a probe), and the spec's runs (`harness.spec`). The allocation
itself is `harness.report.planner.allocate`. The commands it prints add the new seeds only (`--seeds` of seeds not
in the store yet), so `--go` launches exactly the runs listed, and the runs they need (a teacher) when the store
lacks them; the total is the cost of all of these, and a plan whose runs cost more than the budget (a teacher the
per-seed costs left out) is planned again on what is left.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from harness.launch import estimate as est
from harness.launch.launcher import LaunchOptions, prepare
from harness.report import definitions as defs
from harness.report import planner
from harness.report import significance as sig
from harness.report.runs import PAPER_SCALE, load
from harness.report.seeds import tables_for
from harness.report.tables import cell_runs, cell_samples, compare_cells, select_runs
from harness.spec import LoadedSpec, PlannedRun, spec_runs
from harness.words import count

UNITS = ("gpu-h", "core-h")
# re-plans when the runs' exact cost (teachers included) exceeds the budget
_REPLANS = 5


class PlanError(ValueError):
    """A plan that cannot be made (one line for the user)."""


@dataclass(frozen=True)
class Plan:
    spec: str
    profile: str | None
    table: int
    budget: float
    unit: str
    detect: float
    power: float
    comparisons: list[planner.Comparison]
    allocation: planner.Allocation
    seed_cost: dict[str, float]
    # (variants, new seeds) per command, and every run those commands start (dependencies the store lacks too)
    commands: list[tuple[list[str], list[int]]]
    runs: list[PlannedRun]
    cost: float
    spec_path: str
    # the least cost with which one comparison reaches `power` (None: no plan within MAX_ADDED seeds does)
    cheapest: tuple[float, dict[str, int]] | None = None
    notes: list[str] = field(default_factory=list)


def run_cost(e: est.Estimate, unit: str) -> float | None:
    """One estimated run's cost in `unit`: GPU-hours, or core-hours (wall time × the CPU threads of its processes)."""
    if e.wall_s is None:
        return None
    if unit == "gpu-h":
        return e.gpu_h
    threads = e.target.threads or est._torch_threads()
    return e.wall_s * threads * e.target.world_size / 3600


def _as_stored(run: PlannedRun) -> Any:
    """A planned run in the shape a table's match reads (a stored run's attributes)."""
    return SimpleNamespace(spec=run.spec, variant=run.variant, label=run.label, profile=run.profile, source=None,
                           coords=run.coords, config=run.config.as_json(), seed=run.seed, hash=run.hash)


def cell_variants(td: defs.TableDef, runs: list[PlannedRun]) -> dict[tuple[str, str], str]:
    """{(row id, column id): the variant whose runs fill that cell} for the spec's runs."""
    return {cell: members[0].variant for cell, members in cell_runs(td, [_as_stored(r) for r in runs]).items()}


def comparisons(td: defs.TableDef, samples: dict[tuple[str, str], sig.Samples], variants: dict[tuple[str, str], str],
                prior_sd: float | None = None) -> list[planner.Comparison]:
    """The table's comparisons that the spec's variants fill, with the spread each plan rests on: the store's
    where both cells show one (two seeds or more, not all equal), else a prior said as such: `prior_sd`, or the
    median spread of the table's measured comparisons."""
    labels = {r.id: r.label for r in td.rows} | {c.id: c.label for c in td.columns}
    results = compare_cells(td, samples)
    measured = [d.sd for d in results.values() if d.test != sig.REFERENCE and d.sd > 0 and not math.isnan(d.sd)]
    if prior_sd is not None:
        prior, prior_basis = prior_sd, f"prior {prior_sd:g} (--prior-sd)"
    elif measured:
        prior = statistics.median(measured)
        prior_basis = f"prior {prior:.2f}: median of the {count(len(measured), 'measured comparison')}"
    else:
        prior, prior_basis = math.nan, ""
    out = []
    for (rid, cid), variant in variants.items():
        ref = variants.get((td.reference or "", cid))
        if rid == td.reference or ref is None:
            continue
        d = results.get((rid, cid))
        n, n_ref = len(samples.get((rid, cid), [])), len(samples.get((td.reference or "", cid), []))
        if d is not None and d.sd > 0 and not math.isnan(d.sd) and d.test in (sig.PAIRED, sig.WELCH):
            sd, paired, basis = d.sd, d.test == sig.PAIRED, f"measured {d.sd:.2f} ({d.test})"
        elif math.isnan(prior):
            raise PlanError(f"Table {td.number}: no comparison has the two seeds a side needed to measure a spread "
                            f"({labels[rid]} | {labels[cid]} has {n} against {n_ref}); give --prior-sd (top-1 points "
                            "per seed)")
        else:
            why = "spread 0 over its seeds" if d is not None and sig.is_zero_spread(d.test) else "fewer than 2 seeds"
            sd, paired, basis = prior, False, f"{prior_basis} ({why})"
        width = d.high - d.low if d is not None and not math.isnan(d.low) else math.nan
        out.append(planner.Comparison(labels[rid], labels[cid], variant, ref, n, n_ref, sd, paired, basis, width))
    return out


def _new_seeds(loaded: LoadedSpec, profile: str | None, variant: str, store: Any, wanted: int) -> list[int]:
    """The `wanted` smallest seeds of `variant` whose runs the store does not hold yet."""
    seeds: list[int] = []
    start = 0
    while len(seeds) < wanted:
        window = list(range(start, start + wanted + 16))
        runs = [r for r in spec_runs(loaded, profile, window, max_runs=None) if r.variant == variant]
        todo = {e.run.seed for e in prepare(runs, store) if e.state == "to_run"}
        done = {e.run.seed for e in prepare(runs, store) if e.state != "to_run"}
        seeds += [s for s in window if s in todo and s not in done][:wanted - len(seeds)]
        start += len(window)
    return seeds


def _commands(loaded: LoadedSpec, profile: str | None, added: dict[str, int],
              store: Any) -> list[tuple[list[str], list[int]]]:
    """One `harness run` per set of new seeds, with the variants that take them."""
    by_seeds: dict[tuple[int, ...], list[str]] = {}
    for variant, n in added.items():
        if n:
            by_seeds.setdefault(tuple(_new_seeds(loaded, profile, variant, store, n)), []).append(variant)
    return [(variants, list(seeds)) for seeds, variants in sorted(by_seeds.items(), key=lambda kv: kv[1])]


def command_runs(loaded: LoadedSpec, profile: str | None, commands: list[tuple[list[str], list[int]]],
                 store: Any) -> list[PlannedRun]:
    """The runs the commands would start: each command's runs that the store does not hold yet, in plan order."""
    runs: dict[str, PlannedRun] = {}
    for variants, seeds in commands:
        chosen = spec_runs(loaded, profile, seeds, variants, max_runs=None)
        for entry in prepare(chosen, store):
            if entry.state == "to_run":
                runs.setdefault(entry.run.hash, entry.run)
    return list(runs.values())


def _costs(runs: list[PlannedRun], store: Any, options: LaunchOptions, probe: bool, unit: str) -> list[float]:
    records = est.completed_like(store, runs) if runs else []
    estimates = est.estimate_runs(runs, records, options.executor, options.max_parallel, options.slurm, probe,
                                  threads=options.threads)
    out = []
    for e in estimates:
        cost = run_cost(e, unit)
        if cost is None:
            raise PlanError(f"no cost for {e.run.describe()}: {e.basis}")
        out.append(cost)
    return out


def seed_costs(loaded: LoadedSpec, profile: str | None, variants: set[str], store: Any, options: LaunchOptions,
               probe: bool, unit: str) -> dict[str, float]:
    """The cost of one more seed of each variant (its own runs: one per axis value); inf for a variant that pins
    its seeds. Runs it needs (a teacher) are left out here and counted in the plan's total."""
    probe_seed = 1_000_000  # a seed no stored run has: its runs are all to run
    fresh = spec_runs(loaded, profile, [probe_seed], max_runs=None)
    out = {}
    for variant in variants:
        runs = [r for r in fresh if r.variant == variant]
        out[variant] = sum(_costs(runs, store, options, probe, unit)) if all(
            r.seed == probe_seed for r in runs) and runs else math.inf
    return out


def make_plan(loaded: LoadedSpec, store: Any, budget: float, detect: float, unit: str = "gpu-h",
              table: int | None = None, profile: str | None = None, power: float = 0.8,
              options: LaunchOptions | None = None, probe: bool = False, prior_sd: float | None = None,
              alpha: float = 1 - sig.CONFIDENCE) -> Plan:
    """The plan for `budget` (see the module docstring); PlanError where one cannot be made."""
    if unit not in UNITS:
        raise PlanError(f"--unit {unit}: one of {', '.join(UNITS)}")
    options = options or LaunchOptions()
    name = loaded.spec.name
    numbers = [table] if table is not None else tables_for(name, loaded.spec.table)
    if not numbers or numbers[0] not in defs.TABLES or defs.load_table(numbers[0]).reference is None:
        raise PlanError(f"spec '{name}' fills no table with a reference row" if table is None else
                        f"Table {table} has no reference row to compare with")
    td = defs.load_table(numbers[0])
    all_runs = spec_runs(loaded, profile, max_runs=None)
    variants = cell_variants(td, all_runs)
    _, used = select_runs(td, load(store=store), name, profile or PAPER_SCALE, None)
    found = comparisons(td, cell_samples(td, cell_runs(td, used)), variants, prior_sd)
    if not found:
        raise PlanError(f"spec '{name}' under {profile or PAPER_SCALE} fills no compared cell of Table {td.number}")
    costs = seed_costs(loaded, profile, {c.variant for c in found} | {c.reference for c in found}, store, options,
                       probe, unit)
    left = budget
    for _ in range(_REPLANS):
        allocation = planner.allocate(found, costs, left, detect, alpha)
        commands = _commands(loaded, profile, allocation.added, store)
        runs = command_runs(loaded, profile, commands, store)
        total = sum(_costs(runs, store, options, probe, unit))
        if total <= budget + 1e-9:
            break
        left -= total - budget
    else:  # what the seeds need beyond themselves takes the whole budget
        allocation = planner.allocate(found, costs, -1.0, detect, alpha)
        commands, runs, total = [], [], 0.0
    cheapest = planner.cheapest_resolving(found, costs, detect, power, alpha)
    return Plan(name, profile, td.number, budget, unit, detect, power, found, allocation, costs, commands, runs, total,
                loaded.path, cheapest)


def _seed_text(seeds: list[int]) -> str:
    """[3, 4, 5, 9] -> '3-5,9'."""
    parts, start = [], None
    for i, s in enumerate(seeds):
        start = s if start is None else start
        if i + 1 == len(seeds) or seeds[i + 1] != s + 1:
            parts.append(f"{start}" if start == s else f"{start}-{s}")
            start = None
    return ",".join(parts)


def command_lines(plan: Plan) -> list[str]:
    profile = f" --profile {plan.profile}" if plan.profile else ""
    return [f"harness run {plan.spec_path}{profile} --seeds {_seed_text(seeds)} --variants {','.join(variants)}"
            for variants, seeds in plan.commands]


def _an(power: float) -> str:
    """'an' before 80% and 85%, else 'a'."""
    return "an" if f"{power:.0%}".startswith(("8", "11", "18")) else "a"


def _width(w: float) -> str:
    return "none" if not math.isfinite(w) else f"±{w / 2:.2f}"


def format_plan(plan: Plan) -> str:
    """The plan as text: per comparison, seeds now → planned, its cost, interval now → expected, and the chance of
    resolving; the total against the budget; what the plan resolves; the commands."""
    a = plan.allocation
    lines = [f"Plan for Table {plan.table} ({plan.spec}, {plan.profile or PAPER_SCALE}): resolve a {plan.detect:g}-point "
             f"difference to the reference row at {100 * (1 - sig.CONFIDENCE):g}% level, within {plan.budget:g} "
             f"{plan.unit}"]
    for c, now, chance, w_now, w in zip(plan.comparisons, a.chances_now, a.chances, a.widths_now, a.widths):
        k, r = a.added.get(c.variant, 0), a.added.get(c.reference, 0)
        cost = plan.seed_cost[c.variant] * k if k else 0.0
        lines.append(f"  {c.row} | {c.column}: seeds {c.seeds} → {c.seeds + k} (reference {c.ref_seeds} → "
                     f"{c.ref_seeds + r}), +{cost:.3g} {plan.unit}, interval {_width(w_now)} → {_width(w)}, "
                     f"chance {now:.0%} → {chance:.0%}  [sd {c.basis}]")
    for variant, n in sorted(a.added.items()):
        if n:
            lines.append(f"  + {count(n, 'seed')} of {variant}: {plan.seed_cost[variant] * n:.3g} {plan.unit}")
    lines.append(f"Total: {plan.cost:.3g} of {plan.budget:g} {plan.unit} for {count(len(plan.runs), 'run')} "
                 f"(teachers and other runs they need included); expected comparisons resolved {a.resolved_now:.2f} → "
                 f"{a.resolved:.2f} of {len(plan.comparisons)}; {a.reaching(plan.power)} reach "
                 f"{_an(plan.power)} {plan.power:.0%} chance")
    if a.reaching(plan.power) == 0:
        if plan.cheapest is None:
            lines.append(f"This budget resolves nothing: no comparison reaches {_an(plan.power)} {plan.power:.0%} "
                         f"chance with up to {planner.MAX_ADDED} more seeds per variant.")
        else:
            cost, seeds = plan.cheapest
            what = ", ".join(f"{n} of {v}" for v, n in seeds.items())
            lines.append(f"This budget resolves nothing: no comparison reaches {_an(plan.power)} {plan.power:.0%} chance of "
                         f"resolving {plan.detect:g} point{'' if plan.detect == 1 else 's'}; a budget of {cost:.3g} {plan.unit} would (seeds: {what}).")
    if plan.commands:
        lines.append("Runs to add: " + ", ".join(f"{r.short} {r.describe()}" for r in plan.runs))
        lines.append("Commands:")
        lines += [f"  {line}" for line in command_lines(plan)]
    else:
        lines.append("Nothing to run.")
    return "\n".join(lines)
