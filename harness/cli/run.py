"""`harness run`: expand a spec, skip what is done, train the rest."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from harness import paths


def register(app: typer.Typer) -> None:
    app.command("run")(run)


def run(
    spec: Path = typer.Argument(..., help="YAML ablation spec"),
    profile: Optional[str] = typer.Option(None, help="named profile of the spec, e.g. quick"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the plan and train nothing"),
    executor: str = typer.Option("local", help="auto, local, debug or slurm"),
    max_parallel: int = typer.Option(1, min=1, help="runs trained at once by the local executor"),
    db: Optional[str] = typer.Option(None, help="store URL (default: $HARNESS_DB or sqlite:///runs/harness.db)"),
    output: Optional[Path] = typer.Option(None, help="output folder (default: $HARNESS_OUTPUT or ./runs)"),
    detach: bool = typer.Option(False, "--detach", help="return after submitting (cluster executors)"),
) -> None:
    """Train every run of SPEC that the store does not hold yet."""
    from harness.launch import LaunchOptions, format_plan, launch, prepare
    from harness.spec import SpecError, expand, load_spec
    from harness.store import open_store

    root = paths.output_root(output)
    db_url = db or paths.default_db_url(root)
    try:
        loaded = load_spec(spec)
        runs = expand(loaded, profile)
    except SpecError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    if dry_run:
        store = open_store(db_url) if paths.database_exists(db_url) else None
        entries = prepare(runs, store)
        typer.echo(format_plan(entries))
        todo = sum(e.state == "to_run" for e in entries)
        typer.echo(f"{len(entries)} runs: {len(entries) - todo} done or in flight, {todo} to run (dry run: nothing trained)")
        return
    root.mkdir(parents=True, exist_ok=True)
    store = open_store(db_url)
    options = LaunchOptions(executor=executor, max_parallel=max_parallel, output=root, detach=detach)
    result = launch(loaded, runs, store, db_url, options, progress=lambda line: typer.echo(line))
    done = sum(e.state == "done" for e in result.entries)
    typer.echo(f"{len(result.entries)} runs: {done} already done, {len(result.submitted)} trained now, "
               f"{len(result.failures)} failed")
    if result.failures:
        for failure in result.failures:
            typer.echo(f"failed: {failure.run.short} {failure.run.describe()}: {failure.error}"
                       + (f"\n  log: {failure.log_path}" if failure.log_path else ""), err=True)
        raise typer.Exit(1)
