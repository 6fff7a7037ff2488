"""The `harness` command: a thin typer app; each area registers its own commands."""

from __future__ import annotations

import typer

from harness.cli import report, run, seeds, store

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
for area in (run, store, report, seeds):
    area.register(app)


def main() -> None:
    app()
