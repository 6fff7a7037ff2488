"""Rebuilt tables and figures as text and files: what `harness report` and `harness plot` print or write.

    from harness.report import output
    print(output.tables_text([3], "latex", store=store))
    output.write_all("report/", "markdown", store=store)    # index.html (tables, figures) and table3.md, ...
    output.plot("fig1.png", figure=1, store=store)

Each function checks its table numbers, format and figure first and raises `UnknownName` (a KeyError and a
ValueError) naming the valid ones, before it reads the store or draws. Figures import matplotlib on first use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

from harness.report.definitions import TABLES, UnknownName, check_table
from harness.report.page import write_page
from harness.report.render import check_format, render
from harness.report.runs import RunSet, load
from harness.report.tables import table

# file suffix of each table format
SUFFIXES = {"markdown": "md", "latex": "tex", "csv": "csv", "html": "html"}


def check(fmt: str, numbers: Iterable[int] = ()) -> None:
    """Raise UnknownName for a format or a table number the report does not have."""
    check_format(fmt)
    for n in numbers:
        check_table(n)


def tables_text(numbers: Sequence[int], fmt: str = "markdown", runset: RunSet | None = None, db: str | None = None,
                store: Any = None, **options: Any) -> str:
    """Tables `numbers` rendered in `fmt`, one after another (`options`: those of `harness.report.table`)."""
    check(fmt, numbers)
    runset = runset if runset is not None else load(db, store)
    return "\n".join(render(table(n, runset=runset, **options), fmt) for n in numbers)


def write_tables(path: str | Path, numbers: Sequence[int], fmt: str = "markdown", runset: RunSet | None = None,
                 db: str | None = None, store: Any = None, **options: Any) -> Path:
    """`tables_text` written to the file `path` (its folder created); returns the path."""
    text = tables_text(numbers, fmt, runset, db, store, **options)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def write_all(out_dir: str | Path, fmt: str = "markdown", runset: RunSet | None = None, db: str | None = None,
              store: Any = None, spec: str | None = None, profile: str | None = None, source: str | None = None,
              **table_options: Any) -> list[Path]:
    """Every table and figure on one HTML page (`index.html`) and every table in a file of its own
    (`tableN.md`, `.tex`, `.csv` or `.html`), in `out_dir`; returns the page's path, then the tables'."""
    check(fmt)
    runset = runset if runset is not None else load(db, store)
    out = Path(out_dir)
    paths = [write_page(out, runset=runset, spec=spec, profile=profile, table_options=table_options)]
    for n in TABLES:
        paths.append(write_tables(out / f"table{n}.{SUFFIXES[fmt]}", [n], fmt, runset, spec=spec, profile=profile,
                                  source=source, **table_options))
    return paths


def plot_path(out: str | Path | None = None, figure: int | None = None, curves: str | None = None,
              bars: int | None = None) -> Path:
    """Where `plot` writes: `out`, else figure1.png, curves_SPEC.png or tableN.png. Raises UnknownName for a
    figure, table or file format that is not drawn."""
    from harness.report.figures import FIGURES, file_format

    if figure is not None and figure not in FIGURES:
        raise UnknownName(f"no Figure {figure}; figures: {', '.join(map(str, FIGURES))}")
    if bars is not None:
        check_table(bars)
    name = f"figure{figure}" if figure is not None else (f"curves_{curves}" if curves is not None else f"table{bars}")
    path = Path(out) if out is not None else Path(f"{name}.png")
    file_format(path)
    return path


def plot(out: str | Path | None = None, figure: int | None = None, curves: str | None = None,
         bars: int | None = None, runset: RunSet | None = None, db: str | None = None, store: Any = None,
         profile: str | None = None, metric: str = "top1") -> Path:
    """Draw one figure and save it (see `plot_path`): Figure `figure`, the training curves (`metric` per epoch)
    of spec `curves`, or Table `bars` as a chart. Returns the file's path."""
    from harness.report import figures

    if sum(x is not None for x in (figure, curves, bars)) != 1:
        raise ValueError("plot draws one figure: give one of figure, curves or bars")
    path = plot_path(out, figure, curves, bars)
    runset = runset if runset is not None else load(db, store)
    if figure is not None:
        fig = figures.figure1(runset=runset, profile=profile)
    elif curves is not None:
        fig = figures.curves(curves, runset=runset, profile=profile, metric=metric)
    else:
        assert bars is not None  # one of the three, checked above
        fig = figures.bars(int(bars), runset=runset, profile=profile)
    return figures.save(fig, path)
