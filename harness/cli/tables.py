"""Tables printed by the CLI, through rich (installed with typer)."""

from __future__ import annotations

import shutil

from rich.console import Console, JustifyMethod
from rich.table import Table

from harness.launch.status import RunStatus
from harness.states import RunState
from harness.words import clock, epoch_of


def console() -> Console:
    # a pipe or a test runner is not a terminal: keep whole lines rather than rich's 80 columns
    return Console(width=max(120, shutil.get_terminal_size((160, 24)).columns), highlight=False)


def status_table(rows: list[RunStatus]) -> None:
    table = Table(box=None, pad_edge=False, header_style="bold")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("run", "left"), ("status", "left"), ("epoch", "right"), ("top-1", "right"), ("data wait", "right"),
        ("job", "left"), ("host", "left"), ("GPUs", "right"), ("elapsed", "right"), ("GPU-h", "right"),
        ("left", "right"), ("what", "left"))
    for name, justify in columns:
        table.add_column(name, justify=justify, no_wrap=name != "what")
    for r in rows:
        table.add_row(
            r.hash[:10], r.status, epoch_of(r.epoch, r.epochs) if r.epoch is not None else "-",
            f"{r.top1:.1f}" if r.top1 is not None else "-",
            f"{r.data_wait_frac:.0%}" if r.data_wait_frac is not None else "-", r.job_id or "-", r.host or "-",
            str(r.gpus) if r.gpus else "-", clock(r.elapsed_s) if r.elapsed_s is not None else "-",
            f"{r.gpu_h:.3g}" if r.gpu_h is not None else "-",
            clock(r.remaining_s) if r.remaining_s is not None else "-",
            f"{r.spec or ''}: {r.description}"
            + (f"  ({r.error})" if r.error and r.status != RunState.COMPLETED else ""),
        )
    console().print(table)
