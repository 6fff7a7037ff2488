"""`harness weights fetch`: put the published weights a spec names into the hub cache (before going offline)."""

from __future__ import annotations

from typing import Optional

import typer

from harness.cli.common import command, fail


def register(app: typer.Typer) -> None:
    group = typer.Typer(no_args_is_help=True, pretty_exceptions_show_locals=False,
                        help="Published (timm pretrained) weights that runs name.")
    group.command("fetch")(command(fetch))
    app.add_typer(group, name="weights")


def fetch(
    spec: str = typer.Argument(..., help="YAML ablation spec (or one timm pretrained tag)"),
    profile: Optional[str] = typer.Option(None, help="named profile of the spec, e.g. quick"),
    max_runs: int = typer.Option(10_000, "--max-runs", min=1,
                                 help="refuse a spec that expands to more runs than this under any profile, as "
                                      "`harness run` does"),
) -> None:
    """Download every pretrained weight the spec's runs name into the hub cache, printing where each is; a
    cached file that is not what its hub-cache name promises is downloaded again. Each weight that cannot be
    fetched (or repaired) is one error line (exit code 2)."""
    from harness import weights

    try:
        tags = weights.spec_weights(spec, profile, max_runs)  # a bad spec is the error wrapper's one line
    except weights.WeightsError as exc:
        fail(str(exc))
    failed = False
    for tag in tags:
        try:
            typer.echo(f"{tag}  {weights.fetch(tag, repair=True)}")
        except weights.WeightsError as exc:
            typer.echo(f"error: {exc}", err=True)
            failed = True
    if failed:
        raise typer.Exit(2)
