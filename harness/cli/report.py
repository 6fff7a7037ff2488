"""`harness report` and `harness plot`: the paper's tables and figures rebuilt from the store."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from harness.cli.common import command, open_existing_store


def register(app: typer.Typer) -> None:
    app.command("report")(command(report))
    app.command("plot")(command(plot))


def _open(db: Optional[str]):  # type: ignore[no-untyped-def]
    return open_existing_store(db)


def report(
    table: Optional[int] = typer.Option(None, "--table", "-t", help="paper table: 1, 2, 3, 4, 5, 7, 8 or 10"),
    all_: bool = typer.Option(False, "--all", help="every table (with --out DIR: one HTML page with figures)"),
    fmt: str = typer.Option("markdown", "--format", "-f", help="markdown, latex, csv or html"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="a file (one table) or a folder (--all)"),
    db: Optional[str] = typer.Option(None, help="store URL (default: $HARNESS_DB or sqlite:///runs/harness.db)"),
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
    from harness.report import FORMATS, TABLES, render
    from harness.report.runs import load
    from harness.report.tables import table as build

    if fmt not in FORMATS:
        typer.echo(f"error: unknown format '{fmt}'; formats: {', '.join(FORMATS)}", err=True)
        raise typer.Exit(2)
    if cost and table is None and not all_:
        from harness.report.cost import format_costs, spec_costs

        typer.echo(format_costs(spec_costs(store=_open(db))))
        return
    if (table is None) == (not all_):
        typer.echo("error: give --table N, --all or --cost", err=True)
        raise typer.Exit(2)
    if table is not None and table not in TABLES:
        typer.echo(f"error: no Table {table}; tables: {', '.join(map(str, TABLES))}", err=True)
        raise typer.Exit(2)
    store = _open(db)
    runset = load(store=store)
    options = {"vs_reference": vs_reference, "detect": detect, "cost": cost}
    if all_ and out is not None:
        from harness.report.page import write_page

        out.mkdir(parents=True, exist_ok=True)
        page = write_page(out, runset=runset, spec=spec, profile=profile, table_options=options)
        suffix = {"markdown": "md", "latex": "tex", "csv": "csv", "html": "html"}[fmt]
        for n in TABLES:
            df = build(n, runset=runset, spec=spec, profile=profile, source=source, **options)
            (out / f"table{n}.{suffix}").write_text(render(df, fmt), encoding="utf-8")
        typer.echo(f"wrote {page} and table files ({suffix}) to {out}")
        return
    numbers = [table] if table is not None else list(TABLES)
    texts = [render(build(n, runset=runset, spec=spec, profile=profile, source=source, **options), fmt)
             for n in numbers]
    text = "\n".join(texts)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {out}")
    else:
        typer.echo(text, nl=False)


def plot(
    figure: Optional[int] = typer.Option(None, "--figure", help="paper figure (1: throughput vs top-1)"),
    curves: Optional[str] = typer.Option(None, "--curves", help="training curves of this spec's runs"),
    bars: Optional[int] = typer.Option(None, "--bars", help="bar chart of this paper table"),
    metric: str = typer.Option("top1", help="per-epoch metric for --curves"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="FILE.png, .svg or .pdf"),
    db: Optional[str] = typer.Option(None, help="store URL (default: $HARNESS_DB or sqlite:///runs/harness.db)"),
    profile: Optional[str] = typer.Option(None, help="show this profile's runs ('paper-scale': runs without one)"),
) -> None:
    """Draw Figure 1, a spec's training curves, or a table's bar chart."""
    from harness.report import TABLES
    from harness.report.runs import load

    chosen = [x is not None for x in (figure, curves, bars)]
    if sum(chosen) != 1:
        typer.echo("error: give exactly one of --figure 1, --curves SPEC, --bars N", err=True)
        raise typer.Exit(2)
    if figure is not None and figure != 1:
        typer.echo("error: only Figure 1 is drawn (--figure 1)", err=True)
        raise typer.Exit(2)
    if bars is not None and bars not in TABLES:
        typer.echo(f"error: no Table {bars}; tables: {', '.join(map(str, TABLES))}", err=True)
        raise typer.Exit(2)
    if out is None:
        name = "figure1" if figure else (f"curves_{curves}" if curves else f"table{bars}")
        out = Path(f"{name}.png")
    if out.suffix.lower() not in (".png", ".svg", ".pdf"):
        typer.echo(f"error: unknown figure format '{out.suffix}'; use .png, .svg or .pdf", err=True)
        raise typer.Exit(2)
    from harness.report import figures

    runset = load(store=_open(db))
    if figure:
        fig = figures.figure1(runset=runset, profile=profile)
    elif curves:
        fig = figures.curves(curves, runset=runset, profile=profile, metric=metric)
    else:
        fig = figures.bars(int(bars), runset=runset, profile=profile)  # type: ignore[arg-type]
    typer.echo(f"wrote {figures.save(fig, out)}")
