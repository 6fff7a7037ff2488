"""Plain words for what a researcher reads: a count with its noun, as a sentence says it ("1 run", "3 runs")."""

from __future__ import annotations


def count(n: int, one: str, many: str | None = None) -> str:
    """`1 process`, `8 processes`: a number and its noun (`many`: the plural when it is not `one` + s)."""
    return f"{n} {one if n == 1 else (many or one + 's')}"


def epoch_of(epoch: int, epochs: int | None) -> str:
    """`3 of 12`: an epoch as the store, `results`, filters and MLflow's step number it, counted from 0 as timm's and
    DeiT's own logs do (a 12-epoch run's last is 11 of 12), with the run's epochs beside it."""
    return f"{epoch} of {epochs}" if epochs is not None else str(epoch)
