"""The `harness` command: one typer app; each area (harness/cli/*.py) registers its own commands."""

from __future__ import annotations

import typer

from harness.cli import export, plan, report, run, seeds, steer, store, weights

# what `harness --help` opens with: what a researcher can do, and where to start
HELP = """Train the runs of an ablation spec (a YAML file), watch and steer them, and rebuild the DeiT paper's
tables and figures from their results, ours beside the paper's.

Start with `harness run ablations/distillation.yaml --profile quick`, then
`harness report --table 3`."""

# a traceback must never print local variables: they hold database URLs and their passwords
app = typer.Typer(no_args_is_help=True, add_completion=False, help=HELP, pretty_exceptions_show_locals=False)
for area in (run, steer, store, report, seeds, plan, weights, export):
    area.register(app)


def main() -> None:
    app()
