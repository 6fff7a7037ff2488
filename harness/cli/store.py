"""`harness results`, `harness db upgrade|info` and `harness import`: the store's commands.

They parse arguments and print; the work is in harness.results and harness.store. A database URL
is only ever shown with its password replaced by ***.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from harness.cli.common import Db, Output, command, fail, store_url

# columns of the table format besides coordinates (metrics shown when present)
TABLE_COLUMNS = ["hash", "spec", "variant", "profile", "seed", "status", "epoch", "source"]
TABLE_METRICS = ["top1", "top5", "ema_top1"]


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


def register(app: typer.Typer) -> None:
    app.command("results")(command(results))
    app.command("import")(command(import_results))
    db_app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False,
                         help="The results store's schema: upgrade it to this harness's revision, or describe it.")
    db_app.command("upgrade")(command(db_upgrade))
    db_app.command("info")(command(db_info))
    app.add_typer(db_app, name="db")


def results(
    spec: Optional[str] = typer.Option(None, "--spec", help="Only runs of this spec (experiment name)."),
    status: Optional[str] = typer.Option(None, "--status", help="Only runs with this status (or a,b,...)."),
    profile: Optional[str] = typer.Option(None, "--profile", help="Only runs of this profile."),
    where: List[str] = typer.Option([], "--where", metavar="FILTER",
                                    help="Only runs matching FILTER, e.g. \"top1 > 80 and model.name == 'deit_tiny_patch4_32' "
                                         "and distillation.kind in ('hard', 'soft')\", or KEY=VALUE; evaluated in the "
                                         "database (repeatable: all must hold)."),
    fmt: Format = typer.Option(Format.table, "--format", help="table (a summary), csv or json (every column)."),
    columns: Optional[str] = typer.Option(None, "--columns", help="Comma-separated columns to show."),
    db: Db = None, output: Output = None,
) -> None:
    """The runs in the store, one row per run."""
    import harness.results as r

    statuses = None if status is None else [s.strip() for s in status.split(",") if s.strip()]
    try:
        df = r.runs(store_url(db, output), spec=spec, status=statuses, where=where, profile=profile)
    except ValueError as exc:  # a malformed --where, or one naming an unknown key
        fail(str(exc))
    df = _coordinates_completed(df)
    if columns:
        wanted = [c.strip() for c in columns.split(",") if c.strip()]
        missing = [c for c in wanted if c not in df.columns]
        if missing and not df.empty:
            fail(f"no column {', '.join(missing)}; columns: {', '.join(df.columns)}")
        df = df[[c for c in wanted if c in df.columns]]
    if fmt is Format.csv:
        sys.stdout.write(df.to_csv(index=False))
    elif fmt is Format.json:
        sys.stdout.write(df.to_json(orient="records", date_format="iso", indent=1) + "\n")
    elif df.empty:
        typer.echo("no runs")
    else:
        if not columns:
            df = _summary(df)
        typer.echo(df.to_string(index=False, na_rep="—"))


def _coordinates_completed(df):
    """An axis column (`model.name`) holds each run's config value where the run has no such coordinate (a
    teacher outside the axis): the column shows what `--where model.name == ...` matches, never a blank."""
    for column in df.columns:
        config = f"config.{column}"
        if "." in column and not column.startswith(("config.", "info.")) and config in df.columns:
            df[column] = df[column].where(df[column].notna(), df[config])
    return df


def _summary(df):
    from harness.config import short_hash
    from harness.results import BASE_COLUMNS

    config = [c for c in df.columns if c.startswith(("config.", "info."))]
    coords = [c for c in df.columns if c not in BASE_COLUMNS and c not in config and "." in c]
    metrics = [c for c in TABLE_METRICS if c in df.columns]
    shown = df[[c for c in TABLE_COLUMNS if c in df.columns] + coords + metrics].copy()
    shown["hash"] = shown["hash"].map(short_hash)
    return shown.dropna(axis=1, how="all")


def import_results(
    file: Path = typer.Argument(..., help="CSV file, one row per result: spec, variant, optionally label, profile and seed, then axis values "
                                          "and metrics."),
    source: str = typer.Option(..., "--source", help="Where the numbers come from (e.g. deit-paper)."),
    spec: Optional[str] = typer.Option(None, "--spec", help="Spec name for rows without a 'spec' column."),
    db: Db = None, output: Output = None,
) -> None:
    """Record results obtained elsewhere as completed runs tagged with their source."""
    from harness.store import open_store
    from harness.store.importer import import_csv

    with open_store(store_url(db, output)) as store:
        summary, shown = import_csv(store, file, source, spec), store.display_url
    typer.echo(f"imported {summary.rows} runs ({summary.new} new) from {summary.path} as source "
               f"'{summary.source}' into {shown} (specs: {', '.join(summary.experiments) or 'none'})")


def db_upgrade(db: Db = None, output: Output = None) -> None:
    """Bring the store to this harness's schema revision (creates a new store)."""
    from harness.store import upgrade_store
    from harness.store.db import display_url
    url = store_url(db, output)
    shown = display_url(url)
    before, after = upgrade_store(url)
    if before == after:
        typer.echo(f"{shown} is at schema revision {after}: nothing to do")
    elif before is None:
        typer.echo(f"created a results store at {shown} (schema revision {after})")
    else:
        typer.echo(f"upgraded {shown} from schema revision {before} to {after}")


def db_info(db: Db = None, output: Output = None) -> None:
    """Where the store is, its schema revision, and how many rows each table holds."""
    from harness.store import Store, store_revision
    from harness.store.db import display_url
    from harness.store.migrate import revisions

    url = store_url(db, output)
    typer.echo(f"store:    {display_url(url)}")
    found, head = store_revision(url)
    if found is None:
        typer.echo(f"revision: none (no store yet; `harness db upgrade --db {display_url(url)}` creates one)")
        return
    if found not in revisions():
        typer.echo(f"revision: {found} (this harness: {head}; written by a newer harness: upgrade the harness)")
        return
    state = "up to date" if found == head else f"run `harness db upgrade --db {display_url(url)}`"
    typer.echo(f"revision: {found} (this harness: {head}; {state})")
    with Store(url) as store:
        counts = store.counts()
        typer.echo(f"backend:  {store.engine.dialect.name}")
    for name, n in counts.items():
        typer.echo(f"  {name:<18} {n}")
