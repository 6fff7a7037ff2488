"""One self-contained HTML page: every table and figure, readable offline (figures embedded as base64 PNG)."""

from __future__ import annotations

import base64
import datetime as dt
import html
from pathlib import Path
from typing import Any

from harness.report import definitions as defs
from harness.report.runs import RunSet, load
from harness.report.tables import table
from harness.words import count

# tables drawn as charts on the page (Table 1 holds no accuracy)
CHARTED = (2, 3, 4, 5, 7, 8, 10)

STYLE = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 24px 40px; color: #1b1b1b;
       background: #ffffff; max-width: 1400px; }
h1 { font-size: 26px; margin-bottom: 4px; } h2 { font-size: 20px; margin-top: 36px; border-bottom: 2px solid #ddd; }
nav a { margin-right: 12px; }
table.deit-table { border-collapse: collapse; margin: 12px 0; font-size: 13px; }
table.deit-table caption { text-align: left; font-size: 15px; padding: 6px 0; }
table.deit-table th, table.deit-table td { border: 1px solid #c8c8c8; padding: 4px 8px; text-align: right; }
table.deit-table thead th { background: #24476b; color: #fff; text-align: center; }
table.deit-table tbody th { text-align: left; background: #f2f5f8; font-weight: 600; }
table.deit-table tr.group td { background: #e2e8ef; font-style: italic; text-align: left; font-weight: 600; }
table.deit-table td.info { text-align: center; color: #333; }
span.ours { font-weight: 700; color: #0b3d91; } span.ours.missing { color: #9a9a9a; font-weight: 400; }
span.paper { color: #555; } span.paper::before { content: "paper "; font-size: 10px; color: #888; }
td.static span.paper::before { content: ""; }
span.diff.pos { color: #1a7f37; } span.diff.neg { color: #b42318; }
span.delta, span.cost { display: block; font-size: 11px; color: #555; }
span.delta.marked { color: #0b3d91; font-weight: 700; }
div.notes p { margin: 2px 0; font-size: 12px; color: #444; }
figure { margin: 12px 0; } figure img { max-width: 100%; border: 1px solid #e3e3e3; }
figcaption { font-size: 12px; color: #444; }
"""


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def build_page(db: str | None = None, spec: str | None = None, profile: str | None = None,
               store: Any = None, runset: RunSet | None = None, figures: bool = True,
               table_options: dict[str, Any] | None = None) -> str:
    """The whole report as one HTML document (a string); `table_options` go to every `table` call
    (`vs_reference`, `detect`, `cost`)."""
    from harness.report import figures as figs
    from harness.report.render import to_html

    runset = runset if runset is not None else load(db, store)
    parts: list[str] = []
    nav = ['<a href="#figure-1">Figure 1</a>'] + [f'<a href="#section-{n}">Table {n}</a>' for n in defs.TABLES]
    nav.append('<a href="#curves">Training curves</a>')
    for n in defs.TABLES:
        df = table(n, runset=runset, spec=spec, profile=profile, **(table_options or {}))
        parts.append(f'<section id="section-{n}"><h2>Table {n}</h2>')
        parts.append(to_html(df))
        if figures and n in CHARTED:
            fig = figs.bars(n, runset=runset, profile=profile, spec=spec)
            parts.append(f"<figure>{_img(figs.to_bytes(fig), f'Table {n} chart')}"
                         f"<figcaption>Table {n} as a chart.</figcaption></figure>")
        parts.append("</section>")
    head = []
    if figures:
        head.append('<section id="figure-1"><h2>Figure 1</h2><figure>'
                    + _img(figs.to_bytes(figs.figure1(runset=runset, profile=profile)), "Figure 1")
                    + "<figcaption>Throughput against top-1: the paper's Table 5 and our runs.</figcaption>"
                      "</figure></section>")
    curves = ['<section id="curves"><h2>Training curves</h2>']
    specs = runset.spec_names()
    if spec:
        specs = [s for s in specs if s == spec]
    if not specs:
        curves.append("<p>No finished run of ours in the store yet.</p>")
    for name in specs if figures else []:
        fig = figs.curves(name, runset=runset, profile=profile)
        curves.append(f"<figure>{_img(figs.to_bytes(fig), f'curves {name}')}"
                      f"<figcaption>Top-1 per epoch, spec '{html.escape(name)}' (mean over seeds, band: ± std)."
                      "</figcaption></figure>")
    curves.append("</section>")
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    nruns = len(runset.runs)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<title>DeiT ablations: our runs beside the paper</title>"
        f"<style>{STYLE}</style></head><body>"
        "<h1>DeiT ablations: our runs beside the paper</h1>"
        f"<p>Touvron et al., <i>Training data-efficient image transformers &amp; distillation through attention</i>, "
        f"arXiv:2012.12877v2. {count(nruns, 'finished run')} in the store; generated {stamp}. Each cell: ours "
        "(mean ± std over seeds, n) beside the paper's value and the difference; — where no run exists.</p>"
        f"<nav>{''.join(nav)}</nav>" + "".join(head) + "".join(parts) + "".join(curves) + "</body></html>\n"
    )


def write_page(out_dir: str | Path, **kwargs: Any) -> Path:
    """Write `index.html` into `out_dir` and return its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "index.html"
    path.write_text(build_page(**kwargs), encoding="utf-8")
    return path
