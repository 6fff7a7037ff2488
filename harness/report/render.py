"""Rendering a rebuilt table (a DataFrame from `harness.report.tables`) as Markdown, LaTeX, CSV or HTML.

Each cell reads `ours vs paper (ours − paper)`; ours is `mean ± std (n=K)` when K runs (seeds) fill it and
"—" when none does, never a number of our own invention. Descriptive columns show the paper's text. A throughput
cell reads `ours on OUR DEVICE vs paper on THE PAPER'S DEVICE`, without a difference.

Tables compared with their reference row (`vs_reference`, the default where a table names one) add
`; Δ +1.0 [+0.4, +1.6] *` (the difference to the reference row, its 95% interval, * when it excludes 0),
`; reference` on the reference row, and `; Δ +1.0 (n = 1: no interval)` where a side has one seed. Tables built
with `cost` add `; 0.52 GPU-h` (or core-h, CPU core-hours, for CPU runs).

Markdown, LaTeX and HTML show the caption (`df.attrs["caption"]`: what stand-in runs were, then the table
definition's) with the heading, and the notes (which runs are shown, differences, costs, the paper's source) after
the table; CSV is one line per cell.
"""

from __future__ import annotations

import html
import io
import math
from typing import Any

import pandas as pd

from harness.report import significance as sig
from harness.report.cost import RunCost, hours_text
from harness.report.definitions import UnknownName
from harness.words import count

FORMATS = ("markdown", "latex", "csv", "html")
DASH = "—"


def _fmt(value: float, digits: int) -> str:
    return f"{value:.{digits}f}"


def _paper_text(value: Any, digits: int) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int) or (float(value).is_integer() and digits == 0):
        # printed as an integer by the paper (e.g. "5M", "2536")
        return str(int(value))
    return _fmt(float(value), digits)


def cell_parts(df: pd.DataFrame, row: str, col: str) -> dict[str, str | None]:
    """The pieces of one cell as text: ours, paper, diff (None where there is nothing to show)."""
    digits = df.attrs.get("digits", {}).get(col, 1)
    static_raw = df.attrs.get("static_values", {}).get(row, {}).get(col)
    if col in df.attrs.get("static", []):
        return {"ours": None, "paper": _paper_text(static_raw, digits) or DASH, "diff": None, "static": "1",
                "delta": None, "cost": None}
    mean = df.loc[row, (col, "ours")]
    std = df.loc[row, (col, "std")]
    n = int(df.loc[row, (col, "n")]) if not pd.isna(df.loc[row, (col, "n")]) else 0
    paper = df.loc[row, (col, "paper")]
    diff = df.loc[row, (col, "diff")]
    if n == 0 or pd.isna(mean):
        ours = DASH
    else:
        ours = _fmt(mean, digits)
        if n > 1:
            ours += f" ± {_fmt(std, digits)} (n={n})" if not pd.isna(std) else f" (n={n})"
    raw = df.attrs.get("paper_raw", {}).get(row, {}).get(col)
    paper_txt = None if pd.isna(paper) else _paper_text(raw if isinstance(raw, (int, float)) else float(paper), digits)
    diff_txt = None if (pd.isna(diff) or ours == DASH) else f"{diff:+.{digits}f}"
    device = df.attrs.get("devices", {}).get(row, {}).get(col)
    if device and ours != DASH:
        ours += f" on {device}"
    paper_device = df.attrs.get("paper_devices", {}).get(col)
    if paper_device and paper_txt is not None:
        paper_txt += f" on {paper_device}"
    return {"ours": ours, "paper": paper_txt, "diff": diff_txt, "static": None,
            "delta": _delta_text(df, row, col, digits), "cost": _cost_text(df, row, col)}


def _delta_text(df: pd.DataFrame, row: str, col: str, digits: int) -> str | None:
    """`Δ +1.0 [+0.4, +1.6] *`, `reference`, `Δ +1.0 (n = 1: no interval)`, or None (not compared)."""
    if (col, "test") not in df.columns:
        return None
    test = df.loc[row, (col, "test")]
    if test == sig.REFERENCE:
        return "reference"
    if not test:
        return None
    delta, low, high = (df.loc[row, (col, f)] for f in ("delta", "ci_low", "ci_high"))
    text = f"Δ {delta:+.{digits}f}"
    if pd.isna(low):
        return f"{text} ({test})"
    mark = " *" if sig.Difference(delta, low, high, test).marked else ""
    return f"{text} [{low:+.{digits}f}, {high:+.{digits}f}]{mark}"


def _cost_text(df: pd.DataFrame, row: str, col: str) -> str | None:
    if (col, "gpu_h") not in df.columns:
        return None
    return hours_text(RunCost(df.loc[row, (col, "gpu_h")], df.loc[row, (col, "cpu_h")]))


def cell_text(df: pd.DataFrame, row: str, col: str) -> str:
    p = cell_parts(df, row, col)
    if p["static"]:
        return str(p["paper"])
    text = str(p["ours"])
    if p["paper"] is not None:
        text += f" vs {p['paper']}"
        if p["diff"] is not None:
            text += f" ({p['diff']})"
    for extra in (p["delta"], p["cost"]):
        if extra is not None:
            text += f"; {extra}"
    return text


def display_frame(df: pd.DataFrame) -> pd.DataFrame:
    """One text cell per paper column (and the descriptive columns first): what every renderer shows."""
    info = df.attrs.get("info_columns", [])
    out = pd.DataFrame(index=df.index)
    for name in info:
        out[name] = [str(v) for v in df[(name, "")]]
    for col in df.attrs.get("column_labels", []):
        out[col] = [cell_text(df, row, col) for row in df.index]
    return out


def heading(df: pd.DataFrame) -> str:
    return f"Table {df.attrs.get('table')}. {df.attrs.get('title', '')}"


def caption(df: pd.DataFrame) -> str:
    """The text every format shows with the heading: what stand-in runs were, then the table's own caption."""
    return str(df.attrs.get("caption") or "")


def notes(df: pd.DataFrame) -> list[str]:
    a = df.attrs
    lines = []
    origin = a.get("origin")
    nruns = len(a.get("runs", []))
    if origin:
        lines.append(f"Shown: {origin} ({nruns} run{'s' if nruns != 1 else ''}). "
                     f"Cells: ours (mean ± std, n seeds) vs paper (ours − paper); {DASH}: no run.")
    else:
        lines.append(f"No finished run fills this table yet ({DASH}: no run); the paper's values are shown.")
    others = a.get("elsewhere") or []
    if others:
        lead = "Not shown, also filling this table" if nruns else "This table is filled only by runs not shown"
        lines.append(f"{lead}: " + "; ".join(f"{label} ({count(n, 'run')}): {command}"
                                             for label, n, command in others) + ".")
    lines.extend(a.get("notes", []))
    lines.append(f"Paper: {a.get('paper_source', '')}")
    return lines


def _groups(df: pd.DataFrame) -> dict[str, str]:
    return {k: v for k, v in df.attrs.get("row_groups", {}).items() if v}


# ---------------------------------------------------------------------------------------------------------------


def _md_escape(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(df: pd.DataFrame) -> str:
    disp = display_frame(df)
    header = [df.index.name or ""] + list(disp.columns)
    lines = [f"**{_md_escape(heading(df))}**"] + ([_md_escape(caption(df))] if caption(df) else []) + [""]
    lines.append("| " + " | ".join(_md_escape(h) for h in header) + " |")
    lines.append("|" + "|".join(["---"] + ["---:" if c in df.attrs.get("column_labels", []) else ":---:"
                                           for c in disp.columns]) + "|")
    groups = _groups(df)
    for row in disp.index:
        if row in groups:
            lines.append("| " + " | ".join([f"*{_md_escape(groups[row])}*"] + [""] * len(disp.columns)) + " |")
        lines.append("| " + " | ".join([_md_escape(row)] + [_md_escape(v) for v in disp.loc[row]]) + " |")
    lines.append("")
    lines.extend(_md_escape(n) for n in notes(df))
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                  "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
                  "±": r"$\pm$", "↑": r"$\uparrow$", "↓": r"$\downarrow$", "—": "---", "−": "--",
                  "²": r"$^2$", "⋆": r"$^\star$", "✓": r"\checkmark", "✗": r"$\times$", "Δ": r"$\Delta$"}


def _tex(text: Any) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def to_latex(df: pd.DataFrame) -> str:
    disp = display_frame(df)
    ncols = 1 + len(disp.columns)
    out = [r"\begin{table}[t]", r"\centering", r"\small",
           rf"\caption{{{_tex(heading(df))}. {_tex(' '.join(filter(None, [caption(df), *notes(df)])))}}}",
           rf"\label{{tab:deit-{df.attrs.get('table')}}}",
           r"\begin{tabular}{l" + "c" * (ncols - 1) + "}", r"\toprule",
           " & ".join(_tex(h) for h in [df.index.name or ""] + list(disp.columns)) + r" \\", r"\midrule"]
    groups = _groups(df)
    for row in disp.index:
        if row in groups:
            out.append(rf"\multicolumn{{{ncols}}}{{l}}{{\emph{{{_tex(groups[row])}}}}} \\")
        out.append(" & ".join([_tex(row)] + [_tex(v) for v in disp.loc[row]]) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(out) + "\n"


OPTIONAL_FIELDS = ("delta", "ci_low", "ci_high", "test", "need", "gpu_h", "cpu_h")


def tidy(df: pd.DataFrame) -> pd.DataFrame:
    """One line per cell: table, row, column, ours, std, n, paper, diff, origin; then `device` and
    `paper_device` for throughput columns and the fields `vs_reference` / `cost` added, where present."""
    records = []
    devices, paper_devices = df.attrs.get("devices", {}), df.attrs.get("paper_devices", {})
    for row in df.index:
        for col in df.attrs.get("column_labels", []):
            if col in df.attrs.get("static", []):
                continue
            record = {
                "table": df.attrs.get("table"), "row": row, "column": col,
                "ours": df.loc[row, (col, "ours")], "std": df.loc[row, (col, "std")],
                "n": int(df.loc[row, (col, "n")]), "paper": df.loc[row, (col, "paper")],
                "diff": df.loc[row, (col, "diff")], "origin": df.attrs.get("origin") or "",
            }
            if paper_devices:
                record["device"] = devices.get(row, {}).get(col, "")
                record["paper_device"] = paper_devices.get(col, "")
            record.update({f: df.loc[row, (col, f)] for f in OPTIONAL_FIELDS if (col, f) in df.columns})
            records.append(record)
    return pd.DataFrame.from_records(records)


def to_csv(df: pd.DataFrame) -> str:
    buf = io.StringIO()
    tidy(df).to_csv(buf, index=False)
    return buf.getvalue()


def to_html(df: pd.DataFrame, standalone: bool = False) -> str:
    """An HTML <table> (with a <figcaption>-like caption); `standalone` wraps it in a page with styles."""
    disp = display_frame(df)
    labels = df.attrs.get("column_labels", [])
    t = df.attrs.get("table")
    h = [f'<table class="deit-table" id="table-{t}" data-table="{t}">',
         f"<caption><b>{html.escape(heading(df))}</b> {html.escape(caption(df))}</caption>", "<thead><tr>"]
    h += [f"<th>{html.escape(str(c))}</th>" for c in [df.index.name or ""] + list(disp.columns)]
    h.append("</tr></thead><tbody>")
    groups = _groups(df)
    for row in disp.index:
        if row in groups:
            h.append(f'<tr class="group"><td colspan="{1 + len(disp.columns)}">{html.escape(groups[row])}</td></tr>')
        cells = [f'<th scope="row">{html.escape(str(row))}</th>']
        for col in disp.columns:
            if col not in labels:
                cells.append(f'<td class="info">{html.escape(str(disp.loc[row, col]))}</td>')
                continue
            p = cell_parts(df, row, col)
            if p["static"]:
                cells.append(f'<td class="static"><span class="paper">{html.escape(str(p["paper"]))}</span></td>')
                continue
            ours_cls = "ours missing" if p["ours"] == DASH else "ours"
            inner = f'<span class="{ours_cls}">{html.escape(str(p["ours"]))}</span>'
            if p["paper"] is not None:
                inner += f' <span class="paper">{html.escape(p["paper"])}</span>'
            if p["diff"] is not None:
                sign = "neg" if p["diff"].startswith("-") else "pos"
                inner += f' <span class="diff {sign}">({html.escape(p["diff"])})</span>'
            if p["delta"] is not None:
                marked = " marked" if p["delta"].endswith("*") else ""
                inner += f' <span class="delta{marked}">{html.escape(p["delta"])}</span>'
            if p["cost"] is not None:
                inner += f' <span class="cost">{html.escape(p["cost"])}</span>'
            cells.append(f"<td>{inner}</td>")
        h.append("<tr>" + "".join(cells) + "</tr>")
    h.append("</tbody></table>")
    h.append('<div class="notes">' + "".join(f"<p>{html.escape(n)}</p>" for n in notes(df)) + "</div>")
    body = "\n".join(h)
    if not standalone:
        return body + "\n"
    from harness.report.page import STYLE

    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(heading(df))}</title>"
            f"<style>{STYLE}</style></head><body>{body}</body></html>\n")


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise UnknownName(f"unknown format '{fmt}'; formats: {', '.join(FORMATS)}")
    return fmt


def render(df: pd.DataFrame, fmt: str = "markdown") -> str:
    """The table as text in `fmt` (one of FORMATS; html: a page of its own, with styles)."""
    check_format(fmt)
    if fmt == "markdown":
        return to_markdown(df)
    if fmt == "latex":
        return to_latex(df)
    if fmt == "csv":
        return to_csv(df)
    return to_html(df, standalone=True)
