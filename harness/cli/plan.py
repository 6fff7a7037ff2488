"""`harness plan`: which seeds a budget should add to which variants, and `--go` to launch them."""

from __future__ import annotations

import dataclasses
from typing import Optional

import typer

from harness.cli.common import (
    Db, LaunchChoices, Output, command, fail, open_existing_store, store_url, with_launch_options,
)


def register(app: typer.Typer) -> None:
    app.command("plan")(command(with_launch_options(plan)))


def plan(
    spec: str = typer.Argument(..., help="YAML ablation spec: a file, or a shipped spec's name (distillation)"),
    budget: float = typer.Option(..., "--budget", min=0.0, help="what the added runs may cost, in --unit"),
    unit: str = typer.Option("gpu-h", "--unit", help="gpu-h (GPU-hours) or core-h (CPU core-hours)"),
    table: Optional[int] = typer.Option(None, "--table", help="the table whose comparisons to resolve (default: "
                                        "the spec's own)"),
    detect: float = typer.Option(..., "--detect", min=0.001, help="difference to resolve, in top-1 points"),
    profile: Optional[str] = typer.Option(None, help="named profile of the spec, e.g. small"),
    power: float = typer.Option(0.8, min=0.5, max=0.999, help="chance of resolving that counts as resolving"),
    prior_sd: Optional[float] = typer.Option(None, "--prior-sd", min=0.0001, help="per-seed spread (top-1 points) "
                                             "for cells with fewer than two seeds (default: the table's median)"),
    probe: bool = typer.Option(False, "--probe", help="time a few seconds of training of runs whose cost no "
                               "completed run in the store shows"),
    go: bool = typer.Option(False, "--go", help="launch the planned runs"),
    db: Db = None, output: Output = None, *, launch: LaunchChoices,
) -> None:
    """Seeds to add, per variant of SPEC, to resolve the most comparisons of its table within a budget."""
    from harness.export.live import tracking_uri
    from harness.launch import launch_spec
    from harness.plan import PlanError, format_plan, make_plan
    from harness.shipped import spec_file
    from harness.spec import load_spec

    loaded = load_spec(spec_file(spec))
    options = dataclasses.replace(launch.options(output, loaded.spec.slurm, loaded.path),
                                  mlflow=tracking_uri(None, loaded.spec.tracking))
    try:
        made = make_plan(loaded, open_existing_store(db, output), budget, detect, unit, table, profile, power,
                         options, probe, prior_sd)
    except PlanError as exc:
        fail(str(exc))
        raise  # fail() has exited
    typer.echo(format_plan(made))
    if not go:
        return
    if not made.runs:
        return
    result = launch_spec(loaded, made.runs, store_url(db, output), options, progress=typer.echo)
    typer.echo(result.summary())
    if result.failures:
        raise typer.Exit(1)
