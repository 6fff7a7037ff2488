"""The `harness` command: a thin typer app; each area registers its own commands."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)


def _register_all() -> None:
    import importlib

    for name in ("run", "store", "report"):
        try:
            module = importlib.import_module(f"harness.cli.{name}")
        except ModuleNotFoundError as exc:
            # an area whose CLI module is not written yet registers nothing
            if exc.name == f"harness.cli.{name}":
                continue
            raise
        module.register(app)


_register_all()


def main() -> None:
    app()
