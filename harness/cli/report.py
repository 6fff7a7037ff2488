"""`harness report` and `harness plot`: the paper's tables and figures rebuilt from the store."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from harness.cli.common import Db, Output, command, fail, open_existing_store


def register(app: typer.Typer) -> None:
    app.command("report")(command(report))
    app.command("plot")(command(plot))


def report(
    table: Optional[int] = typer.Option(None, "--table", "-t", help="paper table: 1, 2, 3, 4, 5, 7, 8 or 10"),
    all_: bool = typer.Option(False, "--all", help="every table (with --out DIR: one HTML page with figures)"),
    fmt: str = typer.Option("markdown", "--format", "-f", help="markdown, latex, csv or html"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="a file (one table) or a folder (--all)"),
    db: Db = None, output: Output = None,
    spec: Optional[str] = typer.Option(None, help="read this spec's runs instead of the table's own spec"),
    profile: Optional[str] = typer.Option(None, help="show this profile's runs ('paper-scale': runs without one)"),
    source: Optional[str] = typer.Option(None, help="show results imported under this source name"),
    vs_reference: Optional[bool] = typer.Option(
        None, "--vs-reference/--no-vs-reference",
        help="each cell's difference to the reference row, 95% interval over seeds (default: tables that name one)"),
    detect: Optional[float] = typer.Option(None, min=0.0, help="footnote: seeds each row needs to resolve a "
                                           "difference of this many points (implies --vs-reference)"),
    cost: bool = typer.Option(False, "--cost", help="GPU-hours per cell; without --table/--all: per spec"),
) -> None:
    """Print (or write) the paper's tables with our numbers beside the paper's."""
    from harness.report import TABLES
    from harness.report import output as rendering
    from harness.report.runs import check_profile, load

    rendering.check(fmt, [table] if table is not None else [])  # before the store is opened
    if cost and table is None and not all_:
        from harness.report.cost import format_costs, spec_costs

        typer.echo(format_costs(spec_costs(store=open_existing_store(db, output))))
        return
    if (table is None) == (not all_):
        fail("give --table N, --all or --cost")
    numbers = [table] if table is not None else list(TABLES)
    runset = load(store=open_existing_store(db, output))
    check_profile(runset, profile)
    options: dict[str, Any] = {"spec": spec, "profile": profile, "source": source, "vs_reference": vs_reference, "detect": detect,
               "cost": cost}
    if all_ and out is not None:
        page = rendering.write_all(out, fmt, runset, **options)[0]
        typer.echo(f"wrote {page} and table files ({rendering.SUFFIXES[fmt]}) to {out}")
    elif out is not None:
        typer.echo(f"wrote {rendering.write_tables(out, numbers, fmt, runset, **options)}")
    else:
        typer.echo(rendering.tables_text(numbers, fmt, runset, **options), nl=False)


def plot(
    figure: Optional[int] = typer.Option(None, "--figure", help="paper figure (1: throughput vs top-1)"),
    curves: Optional[str] = typer.Option(None, "--curves", help="training curves of this spec's runs"),
    bars: Optional[int] = typer.Option(None, "--bars", help="bar chart of this paper table"),
    metric: str = typer.Option("top1", help="per-epoch metric for --curves"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="FILE.png, .svg or .pdf"),
    db: Db = None, output: Output = None,
    profile: Optional[str] = typer.Option(None, help="show this profile's runs ('paper-scale': runs without one)"),
) -> None:
    """Draw Figure 1, a spec's training curves, or a table's bar chart."""
    from harness.report import output as rendering
    from harness.report.runs import check_profile, load

    if sum(x is not None for x in (figure, curves, bars)) != 1:
        fail("give exactly one of --figure 1, --curves SPEC, --bars N")
    path = rendering.plot_path(out, figure, curves, bars)  # before the store is opened
    runset = load(store=open_existing_store(db, output))
    check_profile(runset, profile)
    typer.echo(f"wrote {rendering.plot(path, figure, curves, bars, runset, profile=profile, metric=metric)}")
    if figure is not None:
        from harness.report.figures import figure1_data

        note = figure1_data(runset=runset, profile=profile).attrs.get("note")
        if note:
            typer.echo(f"only the paper's points: {note}")
