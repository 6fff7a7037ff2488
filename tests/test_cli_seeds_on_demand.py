"""`harness run SPEC --seeds 0-2 --variants a,b`: more seeds for some rows without editing the spec; `report` and
`seeds` read every stored seed of a cell. Through the command line (typer's CliRunner), on a tiny spec that
fills Table 3's rows."""

from __future__ import annotations

import io
import re

import pandas as pd
import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.spec import expand, load_spec
from tests.test_spec import write
from tests.tiny_spec import tiny_spec

runner = CliRunner()

# Table 3's spec name and row variants, each a second of training on 64 digits; the rows differ by a stand-in
# switch (drop path): what is tested is which seeds are planned, trained and read
SPEC = tiny_spec("distillation").replace("resnet_tiny_32", "deit_tiny_patch4_32") + """
variants:
  # a pinned seed, as the shipped specs' single teacher run
  pinned:
    seeds: [5]
    set: {model.drop_path: 0.0}
  no_distillation: {}
  hard_distillation:
    set: {model.drop_path: 0.05}
  usual_distillation:
    set: {model.drop_path: 0.02}
profiles:
  tiny:
    description: "seconds on a CPU"
    seeds: [0]
"""


def harness(*args: object):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [str(a) for a in args])


def planned(stdout: str) -> list[str]:
    """'variant seed=N' of each planned line of a dry run."""
    return [m.group(0) for m in re.finditer(r"\S+ seed=\d+", stdout)]


def test_seeds_and_variants_choose_the_runs_planned(tmp_path):
    spec = write(tmp_path, SPEC)
    out = tmp_path / "out"
    result = harness("run", spec, "--profile", "tiny", "--dry-run", "--seeds", "0-2", "--output", out)
    assert result.exit_code == 0, result.output
    assert sorted(planned(result.stdout)) == sorted(
        [f"{v} seed={s}" for v in ("no_distillation", "hard_distillation", "usual_distillation") for s in (0, 1, 2)]
        + ["pinned seed=5"])
    # seed 0 is the spec's own run: the same hash, so a store holding it skips it
    own = {r.hash for r in expand(load_spec(spec), "tiny")}
    more = {r.hash for r in expand(load_spec(spec), "tiny", [0, 1, 2])}
    assert own < more and len(more - own) == 6

    listed = harness("run", spec, "--profile", "tiny", "--dry-run", "--seeds", "0,3,5", "--variants",
                     "no_distillation, hard_distillation", "--output", out)
    assert listed.exit_code == 0, listed.output
    assert sorted(planned(listed.stdout)) == sorted(
        f"{v} seed={s}" for v in ("no_distillation", "hard_distillation") for s in (0, 3, 5))
    assert not out.exists()


@pytest.mark.parametrize("option,text,message", [
    ("--seeds", "0-x", "error: --seeds: '0-x' is not a seed range a-b or a list of seeds 0,3,5"),
    ("--seeds", "", "error: --seeds: '' is not a seed range a-b or a list of seeds 0,3,5"),
    ("--seeds", "7-3", "error: --seeds: seed range '7-3' ends before it starts"),
    ("--seeds", "0-5000", "error: --seeds: '0-5000' names more than 1000 seeds"),
    ("--seeds", "-1", "error: --seeds: '-1' is not a seed range a-b or a list of seeds 0,3,5"),
    ("--variants", ",", "error: --variants: name at least one variant"),
    ("--variants", "none,hard", "error: {spec}: --variants: no variant 'none', 'hard' in this profile; its variants: "
                                "pinned, no_distillation, hard_distillation, usual_distillation"),
])
def test_bad_seeds_or_variants_are_one_line_and_exit_2(tmp_path, option, text, message):
    spec = write(tmp_path, SPEC)
    result = harness("run", spec, "--profile", "tiny", "--dry-run", option, text, "--output", tmp_path / "out")
    assert result.exit_code == 2
    assert result.stderr == message.format(spec=spec) + "\n"


@pytest.mark.slow  # six runs of a second each, in job processes that import torch: one to three minutes
def test_more_seeds_train_only_the_new_runs_and_report_reads_every_seed(tmp_path, importable_by_jobs):
    spec = write(tmp_path, SPEC)
    out = tmp_path / "out"
    rows = ["--variants", "no_distillation,hard_distillation"]
    local = ["--executor", "local", "--threads", 1, "--output", out]
    first = harness("run", spec, "--profile", "tiny", *rows, *local)
    assert first.exit_code == 0, first.output
    assert "2 runs: 0 already done, 2 trained now" in first.output, first.output
    more = harness("run", spec, "--profile", "tiny", "--seeds", "0-2", *rows, *local)
    assert more.exit_code == 0, more.output
    # seed 0 of both rows was done: only seeds 1 and 2 trained
    assert "6 runs: 2 already done, 4 trained now" in more.output, more.output

    table = harness("report", "--table", 3, "--profile", "tiny", "--format", "csv", "--output", out)
    assert table.exit_code == 0, table.output
    tidy = pd.read_csv(io.StringIO(table.stdout))
    ti = tidy[tidy["column"] == "Ti 224"].set_index("row")
    assert ti.loc["DeiT– no distillation", "n"] == 3 and ti.loc["DeiT– hard distillation", "n"] == 3
    # three seeds on both sides, paired by seed (unless the three differences are equal)
    assert ti.loc["DeiT– hard distillation", "test"] in ("paired", "spread 0 over 3 seeds")

    seeds = harness("seeds", spec, "--detect", 1.0, "--profile", "tiny", "--output", out)
    assert seeds.exit_code == 0, seeds.output
    assert "DeiT– hard distillation | Ti 224: has 3," in seeds.stdout, seeds.stdout


def test_parse_seeds_reads_ranges_and_lists():
    from harness.spec import parse_seeds

    assert parse_seeds("0-7") == list(range(8))
    assert parse_seeds("0,3,5") == [0, 3, 5]
    assert parse_seeds(" 0-2, 9 ,1") == [0, 1, 2, 9]
    assert parse_seeds("4") == [4]
