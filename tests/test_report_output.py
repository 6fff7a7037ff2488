"""Tables and figures as text and files (`harness.report.output`): what `harness report` and `harness plot` do."""

from __future__ import annotations

from pathlib import Path

import pytest

from test_report_helpers import fake_top1, fill

from harness.report import TABLES, output, render, table
from harness.report.definitions import UnknownName


@pytest.fixture
def small_store(sqlite_store):
    fill(sqlite_store, "distillation", "small", fake_top1)
    return sqlite_store


def test_tables_text_renders_each_table_in_turn(small_store):
    text = output.tables_text([3, 5], "markdown", store=small_store)
    # a blank line between two tables
    assert text.startswith("**Table 3.") and "\n\n**Table 5." in text
    assert "71.0 ± 1.0 (n=3) vs 72.2" in text
    assert output.tables_text([3], "latex", store=small_store) == render(table(3, store=small_store), "latex")


# every table and figure of the page: tens of seconds
@pytest.mark.slow
def test_write_tables_makes_the_folder_and_write_all_writes_the_page_and_one_file_per_table(small_store, tmp_path):
    one = output.write_tables(tmp_path / "new" / "t3.tex", [3], "latex", store=small_store)
    assert one == tmp_path / "new" / "t3.tex" and one.read_text(encoding="utf-8").startswith(r"\begin{table}")
    paths = output.write_all(tmp_path / "site", "csv", store=small_store, cost=True)
    assert [p.name for p in paths] == ["index.html"] + [f"table{n}.csv" for n in TABLES]
    assert paths[0].read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert paths[3].read_text(encoding="utf-8") == render(table(3, store=small_store, cost=True), "csv")


def test_unknown_tables_formats_and_figures_are_refused_before_the_store_is_read(tmp_path):
    nowhere = f"sqlite:///{tmp_path / 'none.db'}"
    calls = {
        "no Table 9; tables: 1, 2, 3, 4, 5, 7, 8, 10": lambda: output.tables_text([3, 9], db=nowhere),
        "unknown format 'rtf'; formats: markdown, latex, csv, html": lambda: output.write_all(tmp_path / "site", "rtf",
                                                                                              db=nowhere),
        "no Figure 2; figures: 1": lambda: output.plot(figure=2, db=nowhere),
        "no Table 6; tables: 1, 2, 3, 4, 5, 7, 8, 10": lambda: output.plot(bars=6, db=nowhere),
        "unknown figure format '.gif'; formats: .png, .svg, .pdf": lambda: output.plot(tmp_path / "f.gif", figure=1,
                                                                                       db=nowhere),
    }
    for message, call in calls.items():
        with pytest.raises(UnknownName) as caught:
            call()
        # the message as it is (a KeyError would quote it), and a KeyError and ValueError as before
        assert str(caught.value) == message
        assert isinstance(caught.value, KeyError) and isinstance(caught.value, ValueError)
    assert not (tmp_path / "none.db").exists() and not (tmp_path / "site").exists()


def test_plot_writes_one_figure_where_asked_or_by_default(small_store, tmp_path, monkeypatch):
    assert output.plot_path(figure=1) == Path("figure1.png")
    assert output.plot_path(curves="distillation") == Path("curves_distillation.png")
    assert output.plot_path(tmp_path / "b.svg", bars=3) == tmp_path / "b.svg"
    monkeypatch.chdir(tmp_path)
    assert output.plot(bars=3, store=small_store) == Path("table3.png")
    assert (tmp_path / "table3.png").read_bytes().startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="one of figure, curves or bars"):
        output.plot(figure=1, bars=3, store=small_store)
