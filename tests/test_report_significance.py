"""Differences to the reference row with confidence intervals, seeds to resolve a difference, GPU-hours per cell,
and throughput cells that name devices instead of subtracting them: checked on stores with known per-seed numbers."""

from __future__ import annotations

import io
import math

import pandas as pd
import pytest
from scipy import stats

from test_report_helpers import fake_top1, fill

from harness.report import definitions as defs
from harness.report import render, significance, table
from harness.report.seeds import format_plan as seeds_format
from harness.report.seeds import seed_plan
from tests.runstate import drive

T975_DF2 = 4.302652729911275  # two-sided 95% quantile of Student's t with 2 degrees of freedom (printed tables)
NO, HARD, USUAL, CLS = "DeiT– no distillation", "DeiT– hard distillation", "DeiT– usual distillation", \
    "DeiT⚗: class embedding"
TI = "Ti 224"
# per-seed top-1 of the Ti column: hard − no distillation per seed = 2.0, 2.0, 1.5 (paired);
# usual distillation has seed 2 failed, so its cell holds seeds {0, 1} against {0, 1, 2} (Welch)
TOP1 = {("no_distillation", 0): 70.0, ("no_distillation", 1): 71.0, ("no_distillation", 2): 72.0,
        ("hard_distillation", 0): 72.0, ("hard_distillation", 1): 73.0, ("hard_distillation", 2): 73.5,
        ("usual_distillation", 0): 72.0, ("usual_distillation", 1): 73.0, ("usual_distillation", 2): 99.0}


def _metrics(run) -> dict[str, float]:
    out = fake_top1(run)
    out["top1"] = TOP1.get((run.variant, run.seed), out["top1"])
    out["train_time_s"] = 1800.0  # half an hour
    return out


@pytest.fixture
def known(sqlite_store):
    fill(sqlite_store, "distillation", "small", _metrics,
         ending=lambda run: "failed" if (run.variant, run.seed) == ("usual_distillation", 2) else "completed")
    return sqlite_store


def test_paired_interval_by_seed_matches_hand_computation(known):
    df = table(3, store=known, vs_reference=True)
    d = [2.0, 2.0, 1.5]
    mean = sum(d) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 2)
    half = T975_DF2 * sd / math.sqrt(3)
    assert df.loc[HARD, (TI, "delta")] == pytest.approx(mean)
    assert df.loc[HARD, (TI, "ci_low")] == pytest.approx(mean - half)
    assert df.loc[HARD, (TI, "ci_high")] == pytest.approx(mean + half)
    assert df.loc[HARD, (TI, "test")] == "paired" and df.loc[HARD, (TI, "n")] == 3
    # the reference row is the reference; a column no run fills is not compared
    assert df.loc[NO, (TI, "test")] == "reference" and math.isnan(df.loc[NO, (TI, "delta")])
    assert df.loc[HARD, ("B 224", "test")] == "" and math.isnan(df.loc[HARD, ("B 224", "delta")])
    assert defs.load_table(3).reference == "no_distillation" and df.attrs["reference"] == NO


def test_welch_interval_when_seeds_differ(known):
    df = table(3, store=known, vs_reference=True)
    a, b = [72.0, 73.0], [70.0, 71.0, 72.0]
    va, vb = 0.5 / 2, 1.0 / 3  # variance of each mean
    dof = (va + vb) ** 2 / (va ** 2 / 1 + vb ** 2 / 2)  # Welch–Satterthwaite
    half = stats.t.ppf(0.975, dof) * math.sqrt(va + vb)
    assert df.loc[USUAL, (TI, "test")] == "welch" and df.loc[USUAL, (TI, "n")] == 2
    assert df.loc[USUAL, (TI, "delta")] == pytest.approx(1.5)
    assert df.loc[USUAL, (TI, "ci_low")] == pytest.approx(1.5 - half)
    assert df.loc[USUAL, (TI, "ci_high")] == pytest.approx(1.5 + half)
    assert sum(a) / 2 - sum(b) / 3 == 1.5


def test_one_seed_gives_no_interval_and_no_mark():
    one = significance.difference([(0, 75.0)], [(0, 70.0), (1, 71.0)])
    assert one.delta == pytest.approx(4.5) and one.test == "n = 1: no interval"
    assert math.isnan(one.low) and math.isnan(one.high) and not one.marked
    both = significance.difference([(0, 75.0)], [(0, 70.0)])
    assert both.test == "n = 1: no interval" and math.isnan(both.sd)


def test_zero_spread_gives_no_interval_and_no_mark(known):
    df = table(3, store=known, vs_reference=True)
    # fake_top1: the class head is base + seed − 1 = 74, 75, 76 against 70, 71, 72: +4 on every seed
    assert df.loc[CLS, (TI, "test")] == "spread 0 over 3 seeds"
    assert df.loc[CLS, (TI, "delta")] == pytest.approx(4.0)
    assert math.isnan(df.loc[CLS, (TI, "ci_low")]) and math.isnan(df.loc[CLS, (TI, "ci_high")])
    md = render(df, "markdown")
    assert "Δ +4.0 (spread 0 over 3 seeds)" in md and "Δ +4.0 [" not in md
    assert '<span class="delta">Δ +4.0 (spread 0 over 3 seeds)</span>' in render(df, "html")
    same = significance.difference([(0, 1.0), (1, 2.0)], [(0, 1.0), (1, 2.0)])
    assert same.delta == 0.0 and math.isnan(same.low) and not same.marked and same.test == "spread 0 over 2 seeds"
    flat = significance.difference([(0, 3.0), (1, 3.0)], [(5, 1.0), (6, 1.0), (7, 1.0)])
    assert flat.delta == 2.0 and math.isnan(flat.low) and math.isnan(flat.high) and not flat.marked
    assert flat.test == "spread 0 over 2 and 3 seeds" and flat.sd == 0.0
    # one side flat, the other not: Welch's interval as usual
    one_flat = significance.difference([(0, 3.0), (1, 3.0)], [(5, 1.0), (6, 1.5)])
    assert one_flat.test == "welch" and one_flat.low < one_flat.high


def test_zero_spread_needs_an_unknown_number_of_seeds(known):
    assert significance.seeds_needed(0.0, 0.5) is None and significance.seeds_needed(0.0, 0.5, paired=False) is None
    df = table(3, store=known, vs_reference=True, detect=0.5)
    assert math.isnan(df.loc[CLS, (TI, "need")])
    plan = seed_plan(3, detect=0.5, store=known, profile="small")
    cls = plan[(plan["row"] == CLS) & (plan["column"] == TI)].iloc[0]
    assert cls["test"] == "spread 0 over 3 seeds" and cls["sd"] == 0.0 and math.isnan(cls["need"])
    assert f"{CLS} | {TI}: has 3, needs unknown (no spread among its seeds to plan from)" in \
        seeds_format(plan)


def test_marks_only_intervals_that_exclude_zero():
    assert significance.Difference(1.0, 0.1, 1.9, "paired").marked
    assert significance.Difference(-1.0, -1.9, -0.1, "paired").marked
    assert not significance.Difference(0.5, -0.2, 1.2, "welch").marked
    wide = significance.difference([(0, 72.0), (1, 70.0), (2, 74.0)], [(0, 71.0), (1, 72.0), (2, 70.5)])
    assert wide.low < 0 < wide.high and not wide.marked


def test_renderers_carry_the_difference(known):
    df = table(3, store=known, vs_reference=True)
    md = render(df, "markdown")
    assert "Δ +1.8 [+1.1, +2.6] *" in md and "reference" in md
    assert "Δ +1.5 [" in md and "paired by seed" in md
    latex = render(df, "latex")
    assert r"$\Delta$ +1.8 [+1.1, +2.6] *" in latex
    tidy = pd.read_csv(io.StringIO(render(df, "csv")))
    hard = tidy[(tidy["row"] == HARD) & (tidy["column"] == TI)].iloc[0]
    assert hard["test"] == "paired" and hard["ci_low"] == pytest.approx(df.loc[HARD, (TI, "ci_low")])
    html = render(df, "html")
    assert '<span class="delta marked">Δ +1.8 [+1.1, +2.6] *</span>' in html
    # on by default where the table names a reference row; asked off, nothing changes
    assert table(3, store=known).equals(df)
    assert "Δ" not in render(table(3, store=known, vs_reference=False), "markdown")
    assert (TI, "delta") not in table(3, store=known, vs_reference=False).columns
    five = table(5, store=known, vs_reference=True)
    assert ("DeiT-Ti", "delta") not in five.columns and any("no reference row" in n for n in five.attrs["notes"])


def test_every_ablation_table_names_its_reference_row():
    refs = {n: defs.load_table(n).reference for n in defs.TABLES}
    assert refs == {1: None, 2: "deit_b", 3: "no_distillation", 4: None, 5: None, 7: None, 8: "baseline",
                    10: "res224"}


# ---------------------------------------------------------------------------------------------------------------
# seeds to resolve a difference


def test_seeds_needed_known_cases():
    # two groups, effect size 1: 17 per group (the exact t-test; the normal formula says 15.7 -> 16)
    assert significance.seeds_needed(1.0, 1.0, paired=False) == 17
    # paired, effect size 0.5: 34 pairs (as G*Power's matched-pairs t-test)
    assert significance.seeds_needed(1.0, 0.5, paired=True) == 34
    assert significance.seeds_needed(2.0, 1.0, paired=True) == 34  # only the ratio counts
    assert significance.power(34, 1.0, 0.5) >= 0.8 > significance.power(33, 1.0, 0.5)
    assert significance.seeds_needed(math.nan, 0.5) is None
    assert significance.seeds_needed(10.0, 0.01) is None  # beyond MAX_SEEDS


def test_seed_plan_from_the_stored_spread(known):
    plan = seed_plan(3, detect=0.5, store=known)
    hard = plan[plan["row"] == HARD].iloc[0]
    sd = math.sqrt(((2 - 11 / 6) ** 2 * 2 + (1.5 - 11 / 6) ** 2) / 2)
    assert hard["sd"] == pytest.approx(sd) and hard["has"] == 3 and hard["test"] == "paired"
    assert hard["need"] == significance.seeds_needed(sd, 0.5, paired=True) == 5
    usual = plan[plan["row"] == USUAL].iloc[0]
    assert usual["test"] == "welch" and usual["need"] == significance.seeds_needed(usual["sd"], 0.5, paired=False)
    assert NO not in set(plan["row"])
    df = table(3, store=known, detect=0.5)
    assert "DeiT– hard distillation: 5 (has 3)" in " ".join(df.attrs["notes"])
    with pytest.raises(ValueError, match="no reference row"):
        seed_plan(5, detect=0.5, store=known)


# ---------------------------------------------------------------------------------------------------------------
# GPU-hours per cell and per spec; throughput cells


def test_cost_per_cell_from_stored_time_and_processes(known):
    runs = fill(known, "model_size", "small", fake_top1)
    for run in runs:  # as if trained on 4 GPUs for half an hour each
        known.log_final(run.hash, {"train_time_s": 1800.0}, {"device": "NVIDIA H100 80GB HBM3", "world_size": "4"})
    df = table(1, store=known, cost=True)
    assert df.loc["DeiT-Ti", ("#params (M)", "gpu_h")] == pytest.approx(3 * 0.5 * 4)
    assert df.loc["DeiT-Ti", ("#params (M)", "cpu_h")] == 0.0
    assert "6 GPU-h" in render(df, "markdown")
    shown = len(df.attrs["runs"])
    total = f"{shown * 0.5 * 4:.3g} GPU-h"
    assert f"Cost: {total} for the {shown} runs shown" in " ".join(df.attrs["notes"])
    cpu = table(3, store=known, cost=True)  # the distillation runs are CPU runs ("cpu (test)")
    assert cpu.loc[HARD, (TI, "gpu_h")] == 0.0 and cpu.loc[HARD, (TI, "cpu_h")] == pytest.approx(1.5)
    assert "1.5 core-h" in render(cpu, "markdown")  # "cpu (test)" names no threads: one core a process


def test_throughput_cells_show_devices_not_a_difference(known):
    fill(known, "model_size", "small", fake_top1)
    df = table(5, store=known)
    col = "throughput (im/s)"
    assert df.loc["DeiT-Ti", (col, "ours")] == pytest.approx(1001.0)
    assert math.isnan(df.loc["DeiT-Ti", (col, "diff")])
    assert not math.isnan(df.loc["DeiT-Ti", ("ImNet top-1", "diff")])
    text = render(df, "markdown")
    assert "1001.0 ± 1.0 (n=3) on cpu (test) vs 2536.5 on V100 16GB |" in text
    tidy = pd.read_csv(io.StringIO(render(df, "csv")))
    row = tidy[(tidy["row"] == "DeiT-Ti") & (tidy["column"] == col)].iloc[0]
    assert row["device"] == "cpu (test)" and row["paper_device"] == "V100 16GB" and math.isnan(row["diff"])
    for n in (1, 5, 7, 10):
        assert any(c.paper_device for c in defs.load_table(n).columns), n


# ---------------------------------------------------------------------------------------------------------------
# the CLI


def test_cli_vs_reference_seeds_and_cost(known, sqlite_url):
    from typer.testing import CliRunner

    from harness.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["report", "--table", "3", "--profile", "small", "--db", sqlite_url])
    assert res.exit_code == 0, res.output
    assert "Δ +1.8 [+1.1, +2.6] *" in res.output and "reference" in res.output
    res = runner.invoke(app, ["report", "--table", "3", "--no-vs-reference", "--db", sqlite_url])
    assert res.exit_code == 0 and "Δ" not in res.output
    res = runner.invoke(app, ["report", "--table", "5", "--vs-reference", "--db", sqlite_url])
    assert res.exit_code == 0 and "names no reference row" in res.output
    res = runner.invoke(app, ["report", "--table", "3", "--detect", "0.5", "--db", sqlite_url])
    assert res.exit_code == 0 and "DeiT– hard distillation: 5 (has 3)" in res.output
    res = runner.invoke(app, ["seeds", "ablations/distillation.yaml", "--detect", "0.5", "--db", sqlite_url])
    assert res.exit_code == 0, res.output
    assert "DeiT– hard distillation | Ti 224: has 3, needs 5" in res.output
    res = runner.invoke(app, ["seeds", "distillation", "--detect", "0.5", "--db", sqlite_url])
    assert res.exit_code == 0 and "needs 5" in res.output
    res = runner.invoke(app, ["seeds", "model_size", "--detect", "0.5", "--db", sqlite_url])
    assert res.exit_code == 2 and "no table with a reference row" in res.output
    res = runner.invoke(app, ["report", "--cost", "--db", sqlite_url])
    assert res.exit_code == 0, res.output
    # 12 table runs + the teacher, half an hour each, on CPU; the failed run stored no time
    line = next(x for x in res.output.splitlines() if x.startswith("distillation"))
    assert line.split()[1:] == ["small", "12", "12", "0.000", "6.000"]
    assert res.output.splitlines()[-2].split()[:1] == ["total"]


def test_spec_costs_count_a_shared_run_once_in_the_total(sqlite_store):
    from harness.report.cost import spec_costs

    timed = lambda run: {**fake_top1(run), "train_time_s": 3600.0}  # noqa: E731
    recipe = fill(sqlite_store, "training_recipe", None, timed, epochs=1)
    resolution = fill(sqlite_store, "resolution", None, timed, epochs=1)
    for run in recipe + resolution:  # one GPU each
        sqlite_store.log_final(run.hash, {}, {"device": "NVIDIA A100", "world_size": "1"})
    recipe, resolution = {r.hash for r in recipe}, {r.hash for r in resolution}
    distinct = recipe | resolution
    assert len(distinct) < len(recipe) + len(resolution)  # the 224 run (and its ↑384 fine-tune) are shared
    df = spec_costs(store=sqlite_store).set_index("spec")
    assert df.loc["training_recipe", "gpu_h"] == pytest.approx(len(recipe))
    assert df.loc["resolution", "gpu_h"] == pytest.approx(len(resolution))
    assert df.loc["total", "runs"] == len(distinct) and df.loc["total", "gpu_h"] == pytest.approx(len(distinct))


def test_spec_costs_call_runs_paper_scale_only_in_a_spec_with_profiles(sqlite_store, planned):
    """A lab's spec without profiles is not 'paper-scale' (the README's mylab example); a shipped spec's base is."""
    from harness.report.cost import format_costs, spec_costs

    lab = planned(2, spec="mylab", profile=None)
    sqlite_store.register_experiment("mylab", "name: mylab\nbase: {model.name: tiny_cnn}\nseeds: [0, 1]\n", None)
    sqlite_store.register_runs("mylab", lab)
    shipped = fill(sqlite_store, "training_recipe", None, fake_top1, epochs=1)
    for run in lab:
        drive(sqlite_store, run.hash, "completed")
    df = spec_costs(store=sqlite_store).set_index("spec")
    assert df.loc["mylab", "profile"] == "none" and df.loc["mylab", "runs"] == 2
    assert df.loc["training_recipe", "profile"] == "paper-scale" and df.loc["training_recipe", "runs"] == len(shipped)
    assert "mylab                 none" in format_costs(spec_costs(store=sqlite_store))
