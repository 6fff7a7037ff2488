"""`harness export mlflow`: the store's runs copied to an MLflow tracking server, for labs that read curves there."""

from __future__ import annotations

import os
from typing import Optional

import typer

from harness.cli.common import Db, Output, command, fail, open_existing_store
from harness.words import redact


def register(app: typer.Typer) -> None:
    export_app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False,
                             help="Copy stored runs to the tools your lab already uses.")
    export_app.command("mlflow")(command(mlflow))
    app.add_typer(export_app, name="export")


def mlflow(
    spec: Optional[str] = typer.Argument(None, help="spec name (default: every run in the store)"),
    tracking_uri: str = typer.Option(..., "--tracking-uri", help="MLflow tracking URI (http://..., sqlite:///FILE)"),
    db: Db = None, output: Output = None,
) -> None:
    """One MLflow experiment per spec, one MLflow run per run: config as params, every epoch's metrics, final
    metrics, state and provenance as tags. Run it again any time: it adds only what MLflow lacks."""
    from harness.export.mlflow import MlflowMissing, export, require_mlflow

    # MLflow's own progress lines (creating its tables) are not the researcher's business; read at its import
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    try:
        require_mlflow()
    except MlflowMissing as exc:
        fail(str(exc))
    with open_existing_store(db, output) as store:
        summary = export(store, tracking_uri, spec)
    typer.echo(f"exported to {redact(tracking_uri)}: {summary.line()}")
