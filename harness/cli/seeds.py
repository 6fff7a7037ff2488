"""`harness seeds`: how many seeds each row of an ablation needs to resolve a difference."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from harness.cli.common import Db, Output, command, fail, open_existing_store


def register(app: typer.Typer) -> None:
    app.command("seeds")(command(seeds))


def seeds(
    spec: str = typer.Argument(..., help="spec file (ablations/NAME.yaml) or spec name"),
    detect: Optional[float] = typer.Option(None, min=0.001, help="difference to resolve, in top-1 points "
                                           "(e.g. 0.5); required"),
    profile: Optional[str] = typer.Option(None, help="read this profile's runs ('paper-scale': runs without one)"),
    confidence: float = typer.Option(0.95, min=0.5, max=0.999, help="confidence of the test"),
    power: float = typer.Option(0.8, min=0.5, max=0.999, help="probability of finding a true difference"),
    max_runs: int = typer.Option(10_000, "--max-runs", min=1,
                                 help="refuse a spec file that expands to more runs than this under any profile, "
                                      "as `harness run` does"),
    db: Db = None, output: Output = None,
) -> None:
    """Seeds each row needs, from the stored per-seed spread, to resolve a difference to the reference row."""
    from harness.report.seeds import format_plan, seed_plan, tables_for

    if detect is None:
        fail("say which difference the seeds must resolve, in top-1 points: --detect 0.5, say")

    name, own_table = spec, None
    if spec.endswith((".yaml", ".yml")) or Path(spec).is_file():
        from harness.spec import load_spec, spec_runs

        loaded = load_spec(Path(spec))
        spec_runs(loaded, max_runs=max_runs)  # a spec file `harness run` refuses is refused here alike
        name, own_table = loaded.spec.name, loaded.spec.table
    numbers = tables_for(name, own_table)
    if not numbers:
        fail(f"spec '{name}' fills no table with a reference row")
    store = open_existing_store(db, output)
    texts = [format_plan(seed_plan(n, detect, spec=name, profile=profile, store=store, alpha=1 - confidence,
                                   power=power)) for n in numbers]
    typer.echo("\n\n".join(texts))
