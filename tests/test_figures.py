"""Figures: Figure 1, training curves and per-table bar charts, as PNG, SVG and PDF, from a real store."""

from __future__ import annotations

import pytest

from test_report_helpers import fake_top1, fill

from harness.report import figures, paper

SIGNATURES = {"png": b"\x89PNG", "svg": b"<?xml", "pdf": b"%PDF"}


@pytest.fixture
def filled(sqlite_store):
    fill(sqlite_store, "distillation", "small", fake_top1)
    fill(sqlite_store, "model_size", "quick", fake_top1)
    return sqlite_store


def _check(path, fmt):
    data = path.read_bytes()
    assert data.startswith(SIGNATURES[fmt]) and len(data) > 5000, (path, len(data))


def test_figure1_has_the_papers_points_and_ours(filled, tmp_path):
    from harness.report.runs import load

    data = figures.figure1_data(runset=load(store=filled))
    paper_points = data[data["who"].str.startswith("paper")]
    assert len(paper_points) == 32 and "EfficientNet" in set(paper_points["family"])
    ours = data[data["who"].str.startswith("ours")]
    # model_size quick: DeiT-Ti and DeiT-S widths, with and without the distillation token
    assert set(ours["model"]) == {"DeiT-Ti", "DeiT-S", "DeiT-Ti⚗", "DeiT-S⚗"}
    assert "profile 'quick'" in ours["who"].iloc[0]
    for fmt in ("png", "svg", "pdf"):
        _check(figures.save(figures.figure1(runset=load(store=filled)), tmp_path / f"f1.{fmt}"), fmt)


def test_curves_and_bars(filled, tmp_path):
    from harness.report.runs import load

    runset = load(store=filled)
    data = figures.curves_data("distillation", runset=runset)
    assert set(data["epoch"]) == {1, 2, 3} and data["seed"].nunique() == 3
    assert "profile 'small'" in data.attrs["origin"]
    _check(figures.save(figures.curves("distillation", runset=runset), tmp_path / "c.png"), "png")
    for n in (2, 3, 4, 5, 7, 8, 10):
        _check(figures.save(figures.bars(n, runset=runset), tmp_path / f"t{n}.svg"), "svg")
    with pytest.raises(ValueError, match=r"unknown figure format '\.gif'"):
        figures.save(figures.bars(3, runset=runset), tmp_path / "t3.gif")


def test_plot_cli(sqlite_store, sqlite_url, tmp_path):
    from typer.testing import CliRunner

    from harness.cli import app

    paper.import_paper(sqlite_store)
    runner = CliRunner()
    for args, name, fmt in ((["--figure", "1"], "f.pdf", "pdf"), (["--bars", "3"], "b.png", "png"),
                            (["--curves", "distillation"], "c.svg", "svg")):
        res = runner.invoke(app, ["plot", *args, "--out", str(tmp_path / name), "--db", sqlite_url])
        assert res.exit_code == 0, res.output
        _check(tmp_path / name, fmt)
    for bad in (["--figure", "2"], ["--bars", "6"], [], ["--figure", "1", "--bars", "3"],
                ["--figure", "1", "--out", str(tmp_path / "x.gif")]):
        assert runner.invoke(app, ["plot", *bad, "--db", sqlite_url]).exit_code == 2, bad
