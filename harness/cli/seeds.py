"""`harness seeds`: how many seeds each row of an ablation needs to resolve a difference."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from harness.cli.common import open_existing_store


def register(app: typer.Typer) -> None:
    app.command("seeds")(seeds)


def seeds(
    spec: str = typer.Argument(..., help="spec file (ablations/NAME.yaml) or spec name"),
    detect: float = typer.Option(..., min=0.001, help="difference to resolve, in points (e.g. 0.5)"),
    profile: Optional[str] = typer.Option(None, help="read this profile's runs ('paper-scale': runs without one)"),
    confidence: float = typer.Option(0.95, min=0.5, max=0.999, help="confidence of the test"),
    power: float = typer.Option(0.8, min=0.5, max=0.999, help="probability of finding a true difference"),
    db: Optional[str] = typer.Option(None, help="store URL (default: $HARNESS_DB or sqlite:///runs/harness.db)"),
) -> None:
    """Seeds each row needs, from the stored per-seed spread, to resolve a difference to the reference row."""
    from harness.report.seeds import format_plan, seed_plan, tables_for

    name, own_table = spec, None
    if spec.endswith((".yaml", ".yml")) or Path(spec).is_file():
        from harness.spec import SpecError, load_spec

        try:
            loaded = load_spec(Path(spec)).spec
        except SpecError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2)
        name, own_table = loaded.name, loaded.table
    numbers = tables_for(name, own_table)
    if not numbers:
        typer.echo(f"error: spec '{name}' fills no table with a reference row", err=True)
        raise typer.Exit(2)
    store = open_existing_store(db)
    texts = [format_plan(seed_plan(n, detect, spec=name, profile=profile, store=store, alpha=1 - confidence,
                                   power=power)) for n in numbers]
    typer.echo("\n\n".join(texts))
