"""`harness status`, `harness logs` and `harness cancel`: watch and steer runs from any shell."""

from __future__ import annotations

import time
from typing import Optional

import typer

from harness.cli.common import Db, Output, command, open_existing_store
from harness.words import count


def register(app: typer.Typer) -> None:
    app.command("status")(command(status))
    app.command("logs")(command(logs))
    app.command("cancel")(command(cancel))


def status(
    spec: Optional[str] = typer.Argument(None, help="spec name (default: every run)"),
    watch: bool = typer.Option(False, "--watch", help="refresh every few seconds until every run has finished"),
    interval: float = typer.Option(5.0, help="seconds between refreshes with --watch"),
    db: Db = None, output: Output = None,
) -> None:
    """Each run's state, epoch, latest top-1, job id and elapsed time. A read: it changes no run (only a launch
    gives up a run, and only one whose owner it can prove dead)."""
    from harness.cli.tables import status_table
    from harness.launch.status import statuses
    from harness.states import FINISHED

    store = open_existing_store(db, output)
    while True:
        rows = statuses(store, spec, judged=True)
        status_table(rows)
        if not watch or all(r.status in FINISHED for r in rows):
            return
        time.sleep(interval)


def logs(run: str = typer.Argument(..., help="run hash prefix"), db: Db = None, output: Output = None) -> None:
    """Print a run's log: the epoch lines and errors of every job it had (a resumed run has several)."""
    from harness.launch.control import log_text

    typer.echo(log_text(open_existing_store(db, output), run))


def cancel(target: str = typer.Argument(..., help="spec name or run hash prefix"), db: Db = None,
           output: Output = None) -> None:
    """Cancel the unfinished runs of a spec, or one run, and stop their jobs."""
    from harness.launch.control import cancel as cancel_runs

    cancelled = cancel_runs(open_existing_store(db, output), target)
    typer.echo(f"cancelled {count(len(cancelled), 'run')}" + "".join(f"\n  {c.hash[:10]}  {c.job}" for c in cancelled))
