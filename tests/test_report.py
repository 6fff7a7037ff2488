"""The report: reference numbers, tables rebuilt from a real temporary store, renderers, the CLI."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from test_report_helpers import fake_top1, fill

from harness.report import definitions as defs
from harness.report import paper, render, table
from harness.report.render import cell_text, display_frame, tidy
from tests.runstate import drive


# ---------------------------------------------------------------------------------------------------------------
# reference data


def test_report_imports_no_torch_or_models():
    code = ("import sys, harness.report, harness.report.tables, harness.report.render, harness.report.figures, "
            "harness.report.page, harness.report.paper, harness.report.output, harness.report.setting\n"
            "bad = [m for m in ('torch', 'timm', 'torchvision', 'harness.trainer') if m in sys.modules]\n"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_reference_file_names_its_source_and_fits_its_table():
    for n in defs.TABLES:
        td = defs.load_table(n)
        assert td.paper.number == n
        assert "2012.12877v2" in td.paper.source and f"Table {n}" in td.paper.source
        assert td.paper.verified
        assert set(td.paper.values) <= {r.id for r in td.rows}


def test_reference_numbers_spot_checks():
    t3 = defs.load_table(3).paper
    assert [t3.value("no_distillation", c) for c in t3.columns] == [72.2, 79.8, 81.8, 83.1]
    assert [t3.value("soft", c) for c in t3.columns] == [72.2, 79.8, 81.8, 83.2]
    assert [t3.value("token_both", c) for c in t3.columns] == [74.5, 81.2, 83.4, 84.5]
    t2 = defs.load_table(2).paper
    assert t2.values["regnety_16gf"] == {"teacher_top1": 82.9, "student_224": 83.1, "student_384": 84.2}
    t4 = defs.load_table(4).paper
    for a in t4.columns:  # the disagreement matrix is symmetric with a zero diagonal
        assert t4.value(a, a) == 0.0
        for b in t4.columns:
            assert t4.value(a, b) == t4.value(b, a)
    t5 = defs.load_table(5).paper
    assert t5.values["deit_b_dist_384_1000"]["imnet_top1"] == 85.2
    assert t5.values["deit_ti"]["throughput"] == 2536.5
    assert defs.load_table(10).paper.values["res384"]["imnet_top1"] == 83.1


# ---------------------------------------------------------------------------------------------------------------
# tables from a store filled through the store API


def test_table3_from_small_profile(sqlite_store):
    fill(sqlite_store, "distillation", "small", fake_top1)
    df = table(3, store=sqlite_store)
    assert df.attrs["origin"] == "our runs, profile 'small'"
    ti = "Ti 224"
    # three seeds: base, base+1, base+2 -> mean base+1, std 1
    assert df.loc["DeiT– no distillation", (ti, "ours")] == pytest.approx(71.0)
    assert df.loc["DeiT– no distillation", (ti, "std")] == pytest.approx(1.0)
    assert df.loc["DeiT– no distillation", (ti, "n")] == 3
    assert df.loc["DeiT– no distillation", (ti, "paper")] == 72.2
    assert df.loc["DeiT– no distillation", (ti, "diff")] == pytest.approx(71.0 - 72.2)
    assert df.loc["DeiT– usual distillation", (ti, "ours")] == pytest.approx(72.0)
    assert df.loc["DeiT– hard distillation", (ti, "ours")] == pytest.approx(74.0)
    # the three DeiT⚗ rows read the class head, the distillation head and their average of the same runs
    assert df.loc["DeiT⚗: class embedding", (ti, "ours")] == pytest.approx(75.0)
    assert df.loc["DeiT⚗: distil. embedding", (ti, "ours")] == pytest.approx(75.5)
    assert df.loc["DeiT⚗: class+distillation", (ti, "ours")] == pytest.approx(76.0)
    # no S/B run: empty cells, never a number of ours
    for col in ("S 224", "B 224", "B↑384"):
        assert df[(col, "n")].eq(0).all() and df[(col, "ours")].isna().all()
    md = render(df, "markdown")
    assert "71.0 ± 1.0 (n=3) vs 72.2 (-1.2)" in md
    assert "— vs 79.8" in md and "profile 'small'" in md


def test_profiles_are_never_mixed_and_can_be_chosen(sqlite_store):
    fill(sqlite_store, "distillation", "quick", lambda r: {**fake_top1(r), "top1": 50.0, "top1_cls": 50.0,
                                                        "top1_dist": 50.0})
    fill(sqlite_store, "distillation", "small", fake_top1)
    cell = ("DeiT– hard distillation", ("Ti 224", "ours"))
    quick = table(3, store=sqlite_store, profile="quick")
    small = table(3, store=sqlite_store, profile="small")
    assert quick.loc[cell] == 50.0 and quick.loc[cell[0], ("Ti 224", "n")] == 1
    assert small.loc[cell] == pytest.approx(74.0) and small.loc[cell[0], ("Ti 224", "n")] == 3
    assert "profile 'quick'" in quick.attrs["origin"]
    # no paper-scale run yet: the default shows one profile, whole, and says which
    default = table(3, store=sqlite_store)
    assert default.attrs["profile"] in ("quick", "small")
    assert default.loc[cell] in (quick.loc[cell], small.loc[cell])
    # asking for paper scale with none stored: every cell empty
    paper_scale = table(3, store=sqlite_store, profile="paper-scale")
    assert paper_scale[("Ti 224", "n")].eq(0).all()


def test_paper_scale_runs_are_preferred(sqlite_store):
    fill(sqlite_store, "distillation", "quick", fake_top1)
    from test_report_helpers import planned

    loaded, runs = planned("distillation", None)
    one = next(r for r in runs if r.variant == "hard_distillation" and r.config.model.name == "deit_base_patch16_224")
    sqlite_store.register_runs(loaded.spec.name, [one])
    sqlite_store.log_final(one.hash, {"top1": 82.5}, {})
    drive(sqlite_store, one.hash, "completed")
    df = table(3, store=sqlite_store)
    assert df.attrs["origin"] == "our runs, paper scale"
    assert df.loc["DeiT– hard distillation", ("B 224", "ours")] == 82.5
    assert df[("Ti 224", "n")].eq(0).all()  # the quick runs are not mixed in
    # ...but the table says they are there, and how to see them
    from harness.report.render import notes as note_lines

    notes = note_lines(df)
    assert ("Not shown, also filling this table: our runs, profile 'quick' (4 runs): "
            "harness report --table 3 --profile quick.") in notes, notes


def test_a_table_asked_for_under_an_empty_profile_names_the_profiles_that_fill_it(sqlite_store, sqlite_url):
    from typer.testing import CliRunner

    from harness.cli import app

    fill(sqlite_store, "distillation", "quick", fake_top1)
    res = CliRunner().invoke(app, ["report", "--table", "3", "--profile", "small", "--db", sqlite_url])
    assert res.exit_code == 0, res.output
    assert ("This table is filled only by runs not shown: our runs, profile 'quick' (4 runs): "
            "harness report --table 3 --profile quick.") in res.output, res.output
    res = CliRunner().invoke(app, ["report", "--table", "3", "--db", sqlite_url])  # the default: what there is
    assert "Shown: our runs, profile 'quick' (4 runs)" in res.output and "Not shown" not in res.output, res.output


def test_unfinished_runs_do_not_fill_cells(sqlite_store):
    from test_report_helpers import planned

    loaded, runs = planned("distillation", "quick")
    sqlite_store.register_experiment(loaded.spec.name, loaded.text, loaded.path)
    sqlite_store.register_runs(loaded.spec.name, runs)
    drive(sqlite_store, runs[1].hash, "running")
    sqlite_store.log_epoch(runs[1].hash, 0, {"top1": 40.0})
    df = table(3, store=sqlite_store)
    assert df.attrs["origin"] is None
    assert all(df[(c, "n")].eq(0).all() for c in df.attrs["column_labels"])
    assert "No finished run" in render(df, "markdown")


def test_table4_disagreement_from_stored_predictions(sqlite_store):
    target = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], dtype=np.uint8)
    teacher = target.copy(); teacher[:2] = 9              # 0.2 from the truth
    cls = target.copy(); cls[:3] = 9                      # 0.3
    dist = teacher.copy()                                 # agrees with the teacher
    avg = target.copy(); avg[0] = 9                       # 0.1
    deit = target.copy(); deit[5:9] = 0                   # 0.4

    def preds(run):
        if run.variant == "deit_distilled":
            return {"target": target, "teacher": teacher, "cls": cls, "dist": dist, "avg": avg}
        if run.variant == "no_distillation":
            return {"target": target, "cls": deit}
        return {}

    fill(sqlite_store, "distillation", "quick", fake_top1, predictions=preds)
    df = table(4, store=sqlite_store)
    ours = lambda r, c: df.loc[r, (c, "ours")]  # noqa: E731
    assert ours("groundtruth", "no distillation: convnet") == pytest.approx(0.2)
    assert ours("groundtruth", "DeiT⚗ student: class") == pytest.approx(0.3)
    assert ours("groundtruth", "DeiT⚗ student: DeiT⚗") == pytest.approx(0.1)
    assert ours("groundtruth", "no distillation: DeiT") == pytest.approx(0.4)
    assert ours("convnet (RegNetY)", "DeiT⚗ student: distillation") == 0.0
    assert ours("DeiT", "groundtruth") == pytest.approx(0.4)
    assert df.loc["groundtruth", ("groundtruth", "paper")] == 0.0
    assert any("DeiT-Ti" in n for n in df.attrs["notes"])
    assert "0.200 vs 0.171 (+0.029)" in render(df, "markdown")


def test_store_filled_only_with_the_papers_numbers_rebuilds_every_table(sqlite_store, sqlite_url, tmp_path):
    """The import path: the paper's numbers, imported as results (`harness import`), rebuild the paper's tables."""
    from typer.testing import CliRunner

    from harness.cli import app

    csv_path = paper.write_csv(tmp_path / "paper.csv")
    res = CliRunner().invoke(app, ["import", str(csv_path), "--source", "paper", "--db", sqlite_url])
    assert res.exit_code == 0, res.output
    for n in defs.TABLES:
        df = table(n, store=sqlite_store)
        assert df.attrs["source"] == "paper", n
        for row in df.index:
            for col in df.attrs["column_labels"]:
                if col in df.attrs["static"]:
                    continue
                ours, ref = df.loc[row, (col, "ours")], df.loc[row, (col, "paper")]
                if math.isnan(ref):
                    assert math.isnan(ours), (n, row, col)
                    continue
                # equal, up to the paper's own rounding where Table 1 prints Table 5's throughput rounded
                tol = 0.5 if n == 1 else 1e-9
                assert abs(ours - ref) <= tol, (n, row, col, ours, ref)


def test_committed_paper_csv_is_up_to_date(tmp_path):
    """reports/paper/deit_paper_results.csv is generated from the reference files: regenerate it when they change."""
    fresh = paper.write_csv(tmp_path / "fresh.csv").read_text(encoding="utf-8")
    committed = (defs.reports_dir() / "paper" / "deit_paper_results.csv").read_text(encoding="utf-8")
    assert committed == fresh, "run: python -c \"from harness.report import paper; " \
                               "paper.write_csv('reports/paper/deit_paper_results.csv')\""


def test_paper_csv_rows_flatten_the_config_and_leave_out_empty_mappings():
    run = paper._Run({"spec": "s", "variant": "v"}, {"model": {"name": "deit_b", "distillation_token": True},
                                                     "finetune": None, "augment": {}})
    (row,) = paper.rows([run])
    assert {k: v for k, v in row.items() if k.startswith("config.")} == {
        "config.model.name": "deit_b", "config.model.distillation_token": "true", "config.finetune": ""}


def test_paper_import_api_matches_the_csv(sqlite_store):
    assert paper.import_paper(sqlite_store) == len(paper.paper_runs())
    df = table(3, store=sqlite_store)
    assert df.loc["DeiT⚗: class+distillation", ("B↑384", "ours")] == 84.5


# ---------------------------------------------------------------------------------------------------------------
# renderers and the CLI


@pytest.fixture
def small_store(sqlite_store):
    fill(sqlite_store, "distillation", "small", fake_top1)
    return sqlite_store


def test_renderers(small_store):
    df = table(3, store=small_store)
    disp = display_frame(df)
    assert list(disp.columns[:2]) == ["label", "teacher"] and disp.shape == (6, 6)
    assert cell_text(df, "DeiT– no distillation", "B 224") == "— vs 81.8"
    latex = render(df, "latex")
    assert r"\begin{tabular}" in latex and r"$\pm$" in latex and "---" in latex
    csv_text = render(df, "csv")
    tidy_back = pd.read_csv(__import__("io").StringIO(csv_text))
    assert set(tidy_back.columns) >= {"table", "row", "column", "ours", "std", "n", "paper", "diff", "origin"}
    assert len(tidy_back) == 6 * 4 and len(tidy(df)) == 24
    html = render(df, "html")
    assert html.startswith("<!DOCTYPE html>") and 'id="table-3"' in html and "<td>" in html
    with pytest.raises(ValueError, match="unknown format 'rtf'; formats: markdown, latex, csv, html"):
        render(df, "rtf")


def test_cli_report(small_store, sqlite_url, tmp_path):
    from typer.testing import CliRunner

    from harness.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["report", "--table", "3", "--db", sqlite_url])
    assert res.exit_code == 0, res.output
    assert "Table 3." in res.output and "71.0 ± 1.0 (n=3) vs 72.2" in res.output
    out = tmp_path / "t3.csv"
    res = runner.invoke(app, ["report", "--table", "3", "--format", "csv", "--out", str(out), "--db", sqlite_url])
    assert res.exit_code == 0 and out.read_text().startswith("table,row,column")
    res = runner.invoke(app, ["report", "--table", "3", "--profile", "quick", "--db", sqlite_url])
    assert res.exit_code == 0 and "— vs 72.2" in res.output and "71.0" not in res.output
    for bad in (["report", "--table", "9", "--db", sqlite_url], ["report", "--db", sqlite_url],
                ["report", "--table", "3", "--format", "rtf", "--db", sqlite_url],
                ["report", "--table", "3", "--db", f"sqlite:///{tmp_path / 'none.db'}"]):
        res = runner.invoke(app, bad)
        assert res.exit_code == 2, (bad, res.output)
    res = runner.invoke(app, ["report", "--table", "9", "--db", sqlite_url])
    assert res.output == "error: no Table 9; tables: 1, 2, 3, 4, 5, 7, 8, 10\n"


def test_a_cell_mixing_data_order_versions_says_so(sqlite_store):
    # seed 0 trained by code of the independent seed orders (provenance data_order 2), seeds 1 and 2 before it
    fill(sqlite_store, "distillation", "small", fake_top1,
         provenance=lambda r: {"data_order": 2} if r.seed == 0 else {})
    df = table(3, store=sqlite_store)
    mixed = [n for n in df.attrs["notes"] if n.startswith("Cells mixing runs of different data orders")]
    assert len(mixed) == 1
    assert "DeiT– no distillation / Ti 224 (v1: 2 runs, v2: 1 run)" in mixed[0]
    assert mixed[0] in render(df, "markdown")
    # one precision throughout: no note about precisions
    assert not any("precisions" in n for n in df.attrs["notes"])


def test_cells_of_one_data_order_version_have_no_such_note(sqlite_store):
    fill(sqlite_store, "distillation", "small", fake_top1, provenance=lambda r: {"data_order": 2})
    assert not any(n.startswith("Cells mixing") for n in table(3, store=sqlite_store).attrs["notes"])
