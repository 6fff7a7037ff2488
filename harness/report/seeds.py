"""How many seeds each row of an ablation needs to resolve a difference, from the spread the store holds.

    from harness.report.seeds import seed_plan
    seed_plan(3, detect=0.5, db="sqlite:///runs/harness.db", profile="small")

Per cell (row × column) against the table's reference row: the standard deviation the store shows (of the
per-seed differences when the cells pair by seed, pooled otherwise), the seeds the cell has, and the seeds it
needs (`harness.report.significance.seeds_needed`: two-sided t-test, 95% confidence, 80% power by default).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from harness.report import definitions as defs
from harness.report import significance as sig
from harness.report.runs import RunSet, load
from harness.report.tables import cell_runs, cell_samples, compare_cells, select_runs

COLUMNS = ["table", "row", "column", "test", "sd", "has", "need"]


def tables_for(spec: str, table: int | None = None) -> list[int]:
    """The tables with a reference row that a spec fills: its own `table`, and every table that lists it."""
    found = [n for n in defs.TABLES if spec in defs.load_table(n).specs]
    if table in defs.TABLES and table not in found:
        found.insert(0, table)
    return [n for n in found if defs.load_table(n).reference is not None]


def seed_plan(n: int, detect: float, db: str | None = None, spec: str | None = None, profile: str | None = None,
              runset: RunSet | None = None, store: Any = None, alpha: float = 1 - sig.CONFIDENCE,
              power: float = 0.8) -> pd.DataFrame:
    """One line per compared cell of Table `n` (see the module docstring); `need` is NaN where the store shows no
    spread (one seed on both sides, or the same difference on every seed: `test` then says the spread was zero
    over n seeds) or more than `significance.MAX_SEEDS` would be needed."""
    td = defs.load_table(n)
    if td.reference is None:
        raise ValueError(f"Table {n} names no reference row; tables with one: "
                         + ", ".join(str(t) for t in defs.TABLES if defs.load_table(t).reference))
    runset = runset if runset is not None else load(db, store)
    origin, used = select_runs(td, runset, spec, profile, None)
    samples = cell_samples(td, cell_runs(td, used))
    labels = {r.id: r.label for r in td.rows} | {c.id: c.label for c in td.columns}
    records = []
    for (rid, cid), result in compare_cells(td, samples).items():
        if result.test == sig.REFERENCE:
            continue
        need = sig.seeds_needed(result.sd, detect, alpha, power, paired=result.test == sig.PAIRED)
        records.append({"table": n, "row": labels[rid], "column": labels[cid], "test": result.test,
                        "sd": result.sd, "has": len(samples[(rid, cid)]),
                        "need": float("nan") if need is None else need})
    out = pd.DataFrame.from_records(records, columns=COLUMNS)
    out.attrs.update(table=n, origin=origin.label if origin else None, detect=detect, alpha=alpha, power=power,
                     reference=labels[td.reference])
    return out


def format_plan(plan: pd.DataFrame) -> str:
    """The plan as text: one line per compared cell."""
    a = plan.attrs
    lines = [f"Table {a['table']}: seeds to resolve a {a['detect']:g}-point difference to '{a['reference']}' at "
             f"{100 * (1 - a['alpha']):g}% confidence and {100 * a['power']:g}% power ({a['origin'] or 'no runs'}):"]
    if plan.empty:
        lines.append("  no row has runs beside the reference row yet")
    for r in plan.itertuples(index=False):
        if pd.isna(r.sd):
            need = "? (two seeds are needed to measure the spread)"
        elif sig.is_zero_spread(r.test):
            need = "unknown (no spread among its seeds to plan from)"
        else:
            need = f"more than {sig.MAX_SEEDS}" if pd.isna(r.need) else f"{int(r.need)}"
        sd = "-" if pd.isna(r.sd) else f"{r.sd:.2f}"
        lines.append(f"  {r.row} | {r.column}: has {r.has}, needs {need}  (sd {sd}, {r.test})")
    return "\n".join(lines)
