"""Store -> DataFrames -> the DeiT paper's tables and figures, our numbers beside the paper's.

    from harness.report import table, render
    df = table(3, db="sqlite:///runs/harness.db")   # a DataFrame a notebook can restyle
    print(render(df, "markdown"))

Reads only the results store (`harness.store`); imports no torch, timm or models. Table layouts and the
paper's numbers are data files under `reports/` (see `harness.report.definitions`). Figures (`figures`)
and the one-page HTML report (`page`) import matplotlib/seaborn on first use. `output` prints and writes
tables, the page and figures to files: what `harness report` and `harness plot` call.
"""

from harness.report.definitions import TABLES, load_table
from harness.report.render import FORMATS, render, tidy
from harness.report.runs import PAPER_SCALE, RunSet, load
from harness.report.tables import table, tables

__all__ = ["FORMATS", "PAPER_SCALE", "TABLES", "RunSet", "load", "load_table", "render", "table", "tables", "tidy"]
