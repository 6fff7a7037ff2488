"""The `harness` command: a thin typer app; each area registers its own commands."""

from __future__ import annotations

import typer

from harness.cli import export, report, run, seeds, steer, store, weights

# a traceback must never print local variables: they hold database URLs and their passwords
app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__, pretty_exceptions_show_locals=False)
for area in (run, steer, store, report, seeds, weights, export):
    area.register(app)


def main() -> None:
    app()
