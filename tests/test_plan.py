"""`harness plan`: the seeds a budget adds, from the store's spread and measured cost, on a tiny spec that fills
Table 3's rows (tests/test_cli_seeds_on_demand.py's); through the command line (typer's CliRunner)."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.report import planner
from harness.spec import expand, load_spec
from tests.runstate import TEST_OWNER, drive
from tests.test_cli_seeds_on_demand import SPEC
from tests.test_spec import write

runner = CliRunner()
HOUR_OF_64 = 64 / 3600  # img/s at which one epoch of 64 images takes an hour: one core-hour on one thread

# per-seed top-1 of seeds 0 and 1: hard − none = 2.0, 1.5 (sd 0.35, sure to resolve 1 point with a few seeds);
# usual − none = 0.5, 2.5 (sd 1.41)
TOP1 = {("no_distillation", 0): 70.0, ("no_distillation", 1): 71.0, ("hard_distillation", 0): 72.0,
        ("hard_distillation", 1): 72.5, ("usual_distillation", 0): 70.5, ("usual_distillation", 1): 73.5,
        ("pinned", 5): 90.0}


def harness(*args: object):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [str(a) for a in args])


def fill(tmp_path, store, seeds: list[int]):
    """The tiny spec's `seeds` (and its pinned run) completed, each having trained at an hour per run."""
    spec = write(tmp_path, SPEC)
    loaded = load_spec(spec)
    runs = expand(loaded, "tiny", seeds)
    store.register_experiment(loaded.spec.name, loaded.text, loaded.path)
    store.register_runs(loaded.spec.name, runs)
    for run in runs:
        drive(store, run.hash, "running")
        store.log_final(run.hash, {"top1": TOP1[(run.variant, run.seed)], "train_img_s": HOUR_OF_64,
                                   "train_time_s": 3600.0},
                        {"device": "cpu (1 thread)", "world_size": "1", "top1_unit": "percent"})
        assert store.finish(run.hash, TEST_OWNER.token, "completed")
    return spec


@pytest.fixture
def stored(tmp_path, sqlite_store, sqlite_url):
    return fill(tmp_path, sqlite_store, [0, 1]), sqlite_url, sqlite_store


def plan_args(spec, url, budget, *extra):
    return ["plan", spec, "--profile", "tiny", "--budget", budget, "--unit", "core-h", "--detect", 1.0,
            "--executor", "local", "--threads", 1, "--db", url, *extra]


def test_plan_prints_the_best_allocation_its_cost_and_commands(stored):
    spec, url, store = stored
    result = harness(*plan_args(spec, url, 3))
    assert result.exit_code == 0, result.output
    out = result.stdout
    # both comparisons are paired over seeds {0, 1}, with the spreads of TOP1
    assert "DeiT– hard distillation | Ti 224: seeds 2 → " in out and "[sd measured 0.35 (paired)]" in out
    assert "[sd measured 1.41 (paired)]" in out
    # a core-hour per seed of each variant, and both comparisons paired (the planned seeds count where both sides
    # have them): 3 core-hours as no+1, hard+1, usual+1 move hard to 3 paired seeds (25% -> 71%) and usual to 3
    # (7% -> 12%); no+1, hard+2 or no+2, hard+1 move hard alike and usual not at all; so one seed of each
    for variant in ("no_distillation", "hard_distillation", "usual_distillation"):
        assert f"+ 1 seed of {variant}: 1 core-h" in out
    assert "chance 25% → 71%" in out and "chance 7% → 12%" in out
    assert re.search(r"Total: 3 of 3 core-h for 3 runs", out), out
    commands = re.findall(r"^  harness run .*$", out, re.M)
    assert commands and all("--profile tiny --seeds 2" in c for c in commands)


def test_an_impossible_budget_says_so_and_what_budget_would(stored):
    spec, url, store = stored
    result = harness(*plan_args(spec, url, 0.5))
    assert result.exit_code == 0, result.output
    found = re.search(r"This budget resolves nothing: no comparison reaches an 80% chance of resolving 1 point; "
                      r"a budget of (\S+) core-h would \(seeds: (.*)\)\.", result.stdout)
    assert found, result.stdout
    assert "Nothing to run." in result.stdout and "Commands:" not in result.stdout
    # that budget does resolve one
    enough = harness(*plan_args(spec, url, found.group(1)))
    assert enough.exit_code == 0 and "This budget resolves nothing" not in enough.stdout, enough.stdout
    before = {r.hash for r in store.runs()}
    nothing = harness(*plan_args(spec, url, 0.5, "--go"))
    assert nothing.exit_code == 0 and {r.hash for r in store.runs()} == before


def test_cells_of_one_seed_plan_from_a_prior_said_as_such(tmp_path, sqlite_store, sqlite_url):
    spec = fill(tmp_path, sqlite_store, [0])
    refused = harness(*plan_args(spec, sqlite_url, 3))
    assert refused.exit_code == 2
    assert refused.stderr.startswith("error: Table 3: no comparison has the two seeds a side needed to measure a "
                                     "spread") and refused.stderr.endswith("give --prior-sd (top-1 points per seed)\n")
    result = harness(*plan_args(spec, sqlite_url, 3, "--prior-sd", 0.5))
    assert result.exit_code == 0, result.output
    assert result.stdout.count("[sd prior 0.5 (--prior-sd) (fewer than 2 seeds)]") == 2
    # a seed's cell has no interval: the plan gives both sides a second seed at least, where 3 core-hours allow
    assert "interval none → ±" in result.stdout


@pytest.mark.slow  # trains the planned runs (a second each, in job processes that import torch)
def test_go_runs_exactly_the_printed_runs(stored, importable_by_jobs, tmp_path):
    spec, url, store = stored
    before = {r.hash for r in store.runs()}
    printed = harness(*plan_args(spec, url, 2))
    assert printed.exit_code == 0, printed.output
    listed = re.search(r"^Runs to add: (.*)$", printed.stdout, re.M).group(1)
    shorts = {item.split()[0] for item in listed.split(", ")}
    # each printed command's dry run plans those same runs
    dry = set()
    for command in re.findall(r"^  harness run (.*)$", printed.stdout, re.M):
        out = harness("run", *command.split(), "--dry-run", "--db", url, "--executor", "local")
        assert out.exit_code == 0, out.output
        dry |= {line.split()[0] for line in out.stdout.splitlines() if "  to run  " in line}
    went = harness(*plan_args(spec, url, 2, "--go", "--output", tmp_path / "out"))
    assert went.exit_code == 0, went.output
    trained = {r.hash for r in store.runs()} - before
    assert {h[:10] for h in trained} == shorts == dry and len(shorts) == 2
