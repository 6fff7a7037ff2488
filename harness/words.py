"""Plain words for what a researcher reads: a count with its noun, as a sentence says it ("1 run", "3 runs")."""

from __future__ import annotations


def count(n: int, one: str, many: str | None = None) -> str:
    """`1 process`, `8 processes`: a number and its noun (`many`: the plural when it is not `one` + s)."""
    return f"{n} {one if n == 1 else (many or one + 's')}"
