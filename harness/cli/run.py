"""`harness run` and `harness retry`: train what the store does not hold yet, or train failed runs again."""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional, TypeVar

import typer

from harness.cli.common import (
    Db, LaunchChoices, Output, command, fail, open_existing_store, store_url, with_launch_options,
)
from harness.words import count

T = TypeVar("T")


def register(app: typer.Typer) -> None:
    app.command("run")(command(with_launch_options(run)))
    app.command("retry")(command(with_launch_options(retry)))


def run(
    spec: str = typer.Argument(..., help="YAML ablation spec: a file, or a shipped spec's name (distillation)"),
    profile: Optional[str] = typer.Option(None, help="named profile of the spec, e.g. quick"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the plan and its estimated cost; train nothing"),
    probe: bool = typer.Option(False, "--probe", help="with --dry-run: time 7 training steps (at least 3 s) of "
                               "each model here, for runs whose speed no completed run in the store shows: seconds "
                               "on a GPU, minutes a model on a busy CPU"),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="these seeds instead of the spec's: a range 0-7 or a "
                                        "list 0,3,5 (a variant that pins its own seeds keeps them)"),
    variants: Optional[str] = typer.Option(None, "--variants", help="only these variants (comma-separated), with "
                                           "the runs they need (teachers, fine-tuning sources)"),
    max_runs: int = typer.Option(10_000, "--max-runs", min=1,
                                 help="refuse a spec that expands to more runs than this under any profile "
                                      "(counted before anything is built)"),
    mlflow: Optional[str] = typer.Option(None, "--mlflow", help="MLflow tracking URI to copy each epoch to as it "
                                         "ends (default: $HARNESS_MLFLOW_URI, else the spec's tracking: mlflow:)"),
    db: Db = None, output: Output = None, *, launch: LaunchChoices,
) -> None:
    """Train every run of SPEC that the store does not hold yet."""
    from harness.export.live import tracking_uri
    from harness.launch import dry_run as plan_only
    from harness.launch import launch_spec
    from harness.shipped import spec_file
    from harness.spec import load_spec, parse_names, parse_seeds, spec_runs

    seed_list = _parsed("--seeds", parse_seeds, seeds)
    names = _parsed("--variants", parse_names, variants)
    loaded = load_spec(spec_file(spec))
    runs = spec_runs(loaded, profile, seed_list, names, max_runs)
    options = dataclasses.replace(launch.options(output, loaded.spec.slurm, loaded.path),
                                  mlflow=tracking_uri(mlflow, loaded.spec.tracking))
    if dry_run:
        plan, estimate, problems = plan_only(runs, store_url(db, output), options, probe)
        typer.echo(plan)
        typer.echo(estimate, err=True)  # stdout stays the plan, one line per run, for scripts
        if problems:
            typer.echo(f"error: the real run would stop on {count(len(problems), 'problem')}:", err=True)
            for line in problems:
                typer.echo(f"error: {line}", err=True)
            raise typer.Exit(2)
        return
    result = launch_spec(loaded, runs, store_url(db, output), options, progress=typer.echo)
    typer.echo(result.summary())
    _report_failures(result)


def retry(
    spec: Optional[str] = typer.Argument(None, help="spec name (default: every spec)"),
    failed: bool = typer.Option(False, "--failed", help="resubmit failed or cancelled runs (required)"),
    db: Db = None, output: Output = None, *, launch: LaunchChoices,
) -> None:
    """Resubmit failed or cancelled runs; each resumes from its last checkpoint."""
    from harness.launch.control import retry_failed

    if not failed:
        raise typer.BadParameter("say which runs to retry: --failed", param_hint="--failed")
    result = retry_failed(open_existing_store(db, output), store_url(db, output), spec,
                          lambda section, name: launch.options(output, section, f"spec '{name}' as last launched"),
                          progress=typer.echo)
    if result is None:
        typer.echo("nothing to retry")
        return
    typer.echo(f"{len(result.submitted)} resubmitted, {len(result.elsewhere)} in flight elsewhere, "
               f"{len(result.failures)} failed again")
    _report_failures(result)


def _parsed(option: str, parse: Callable[[str], list[T]], text: Optional[str]) -> list[T] | None:
    """An option's text parsed, None when not given; bad text is one line and exit 2."""
    if text is None:
        return None
    try:
        return parse(text)
    except ValueError as exc:
        fail(f"{option}: {exc}")
        raise  # fail() has exited


def _report_failures(result) -> None:
    for failure in result.failures:
        typer.echo(f"failed: {failure.run.short} {failure.run.describe()}: {failure.error}"
                   + (f"\n  log: {failure.log_path}" if failure.log_path else ""), err=True)
    if result.failures:
        raise typer.Exit(1)
