"""Figures with seaborn (matplotlib's Agg backend, no display needed): PNG, SVG or PDF.

- `figure1`: the paper's Figure 1, throughput against ImageNet top-1: the paper's points (its Table 5) and
  ours (the DeiT rows of our rebuilt Table 5);
- `curves`: per-variant training curves of one spec from the per-epoch metrics (mean over seeds, with the
  spread across seeds as a band);
- `bars`: a bar chart of one ablation table, ours (± std across seeds) beside the paper's value; Table 4 is
  drawn as a heat map of our disagreement matrix.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from harness.report.definitions import UnknownName, load_table  # noqa: E402
from harness.report.runs import Origin, RunSet, load, origin_of, parse_profile  # noqa: E402
from harness.report.tables import table  # noqa: E402

FIGURE_FORMATS = ("png", "svg", "pdf")
# the paper's figures drawn here (Figure 1: throughput against top-1)
FIGURES = (1,)

_FAMILIES = (("efficientnet", "EfficientNet"), ("regnety", "RegNetY"), ("resnet", "ResNet"),
             ("kdforaa", "KDforAA"), ("vit_", "ViT"))


def _family(row_id: str) -> str:
    if row_id.startswith("deit_"):
        return "DeiT⚗" if "_dist" in row_id else "DeiT"
    return next((name for prefix, name in _FAMILIES if row_id.startswith(prefix)), row_id)


def _new(figsize: tuple[float, float] = (7.5, 4.8)) -> tuple[plt.Figure, plt.Axes]:
    sns.set_theme(style="whitegrid", context="notebook")
    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    return fig, ax


def _empty(ax: plt.Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=11, color="0.35", wrap=True)


# ---------------------------------------------------------------------------------------------------------------


def figure1_data(db: str | None = None, runset: RunSet | None = None, profile: str | None = None) -> pd.DataFrame:
    """Points of Figure 1: one line per model, `who` = paper or ours, throughput (im/s) and top-1 (%)."""
    runset = runset if runset is not None else load(db)
    df = table(5, runset=runset, profile=profile)
    ids = df.attrs["row_ids"]
    points = []
    for rid, label in zip(ids, df.index):
        fam = _family(rid)
        paper_tp, paper_acc = df.loc[label, ("throughput (im/s)", "paper")], df.loc[label, ("ImNet top-1", "paper")]
        if not (pd.isna(paper_tp) or pd.isna(paper_acc)):
            points.append({"model": label, "family": fam, "who": "paper (V100)", "throughput": paper_tp,
                           "top1": paper_acc})
        ours_tp, ours_acc = df.loc[label, ("throughput (im/s)", "ours")], df.loc[label, ("ImNet top-1", "ours")]
        if not (pd.isna(ours_tp) or pd.isna(ours_acc)):
            device = df.attrs.get("devices", {}).get(label, {}).get("throughput (im/s)")
            who = f"ours ({df.attrs.get('origin')}" + (f"; {device})" if device else ")")
            points.append({"model": label, "family": fam, "who": who, "throughput": ours_tp, "top1": ours_acc})
    out = pd.DataFrame.from_records(points, columns=["model", "family", "who", "throughput", "top1"])
    out.attrs["origin"] = df.attrs.get("origin")
    if not (~out["who"].str.startswith("paper")).any():
        out.attrs["note"] = _why_no_points_of_ours(runset, profile)
    return out


def _why_no_points_of_ours(runset: RunSet, profile: str | None) -> str:
    """One true line on why Figure 1 has no point of ours: it draws Table 5's spec, which may hold no finished
    run (other specs' runs, however complete, are not its rows), or runs without a paper-protocol throughput."""
    specs = load_table(5).specs
    chosen, wanted = parse_profile(profile)
    runs = [r for r in runset.in_specs(specs) if not chosen or r.profile == wanted]
    names = ", ".join(specs)
    of_profile = f" of profile '{profile}'" if chosen else ""
    if not runs:
        return (f"no finished run{of_profile} of {names} (Table 5's spec, whose runs Figure 1 draws) yet: "
                f"harness run ablations/{specs[0]}.yaml --profile quick")
    return (f"none of the {len(runs)} finished runs{of_profile} of {names} fills a DeiT row of Table 5 with both "
            "top-1 and a 'paper' protocol throughput (throughput.protocols)")


def figure1(db: str | None = None, runset: RunSet | None = None, profile: str | None = None) -> plt.Figure:
    data = figure1_data(db, runset, profile)
    fig, ax = _new((8, 5.2))
    sns.scatterplot(data=data, x="throughput", y="top1", hue="family", style="who", s=70, ax=ax)
    for _, p in data[~data["who"].str.startswith("paper")].iterrows():
        ax.annotate(p["model"], (p["throughput"], p["top1"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("throughput (images/s, log scale)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title("Figure 1: throughput vs top-1 (paper: ImageNet on a V100; ours: the device of each run)")
    if data.attrs.get("note"):
        ax.text(0.02, 0.02, data.attrs["note"], transform=ax.transAxes, fontsize=8, color="0.35", wrap=True)
    ax.legend(loc="best", fontsize=8)
    return fig


# ---------------------------------------------------------------------------------------------------------------


def curves_data(spec: str, db: str | None = None, runset: RunSet | None = None, profile: str | None = None,
                metric: str = "top1") -> pd.DataFrame:
    """Per-epoch `metric` of every finished run of `spec` (one origin: see `harness.report.tables`)."""
    runset = runset if runset is not None else load(db)
    runs = [r for r in runset.in_specs([spec]) if getattr(r, "source", None) is None]
    chosen, wanted = parse_profile(profile)
    if chosen:
        runs = [r for r in runs if r.profile == wanted]
    origins = sorted({origin_of(r) for r in runs}, key=lambda o: (o.rank()[0], -sum(origin_of(r) == o for r in runs)))
    origin: Origin | None = origins[0] if origins else None
    runs = [r for r in runs if origin_of(r) == origin]
    by_hash = {r.hash: r for r in runs}
    rows = []
    for run_hash, epoch, name, value in runset.metrics(list(by_hash)):
        if name != metric:
            continue
        r = by_hash[run_hash]
        model = (r.config or {}).get("model", {}).get("name", "")
        rows.append({"variant": r.label or r.variant, "model": model, "seed": r.seed, "epoch": int(epoch) + 1,
                     metric: float(value), "hash": run_hash})
    out = pd.DataFrame.from_records(rows, columns=["variant", "model", "seed", "epoch", metric, "hash"])
    out.attrs["origin"] = origin.label if origin else None
    return out


def curves(spec: str, db: str | None = None, runset: RunSet | None = None, profile: str | None = None,
           metric: str = "top1") -> plt.Figure:
    data = curves_data(spec, db, runset, profile, metric)
    fig, ax = _new()
    if data.empty:
        _empty(ax, f"no per-epoch '{metric}' stored for spec '{spec}' yet")
    else:
        hue = data["variant"] if data["model"].nunique() <= 1 else data["variant"] + " · " + data["model"]
        sns.lineplot(data=data.assign(run=hue), x="epoch", y=metric, hue="run", errorbar="sd", marker="o",
                     markersize=4, ax=ax)
        ax.legend(fontsize=8, loc="best")
    ax.set_title(f"Training curves: {spec} ({data.attrs.get('origin') or 'no runs'})", fontsize=11)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{metric} (%)" if metric.startswith("top") else metric)
    return fig


# ---------------------------------------------------------------------------------------------------------------


def bars(n: int, db: str | None = None, runset: RunSet | None = None, profile: str | None = None,
         spec: str | None = None) -> plt.Figure:
    """A bar chart of Table `n` (ours ± std, the paper's value as a black tick); Table 4 as a heat map."""
    runset = runset if runset is not None else load(db)
    df = table(n, runset=runset, profile=profile, spec=spec)
    if n == 4:
        return _heatmap(df)
    shown = _bar_data(df)
    height = max(3.6, 0.42 * shown["row"].nunique() * max(1, shown["column"].nunique()) ** 0.5 + 1.5)
    fig, ax = _new((8, min(height, 14)))
    if shown.empty:
        _empty(ax, f"Table {n}: nothing to draw")
        return fig
    order = [r for r in df.index if r in set(shown["row"])]
    hue_order = [c for c in df.attrs["column_labels"] if c in set(shown["column"])]
    if shown["ours"].notna().any():
        _ours_bars(ax, shown, order, hue_order)
        ax.set_xlabel(f"top-1 (%), ours ({df.attrs.get('origin')}); black tick: paper")
    else:
        sns.barplot(data=shown, y="row", x="paper", hue="column", order=order, hue_order=hue_order, ax=ax,
                    errorbar=None, orient="h", alpha=0.45)
        ax.set_xlabel("paper's top-1 (%) (no run of ours yet)")
        ax.legend(fontsize=8, loc="lower right")
    values = pd.concat([shown["ours"], shown["paper"]]).dropna()
    if not values.empty:
        lo, hi = float(values.min()), float(values.max())
        ax.set_xlim(max(0.0, lo - 0.15 * (hi - lo + 1) - 1), hi + 0.1 * (hi - lo + 1) + 1)
    ax.set_ylabel("")
    ax.set_title(f"Table {n}: {df.attrs.get('title')}", fontsize=10)
    return fig


def _bar_data(df: pd.DataFrame) -> pd.DataFrame:
    """One line per (row, column) to draw: row, column, ours, std, paper. With runs of ours: only the rows and
    columns they fill; without: the paper's values."""
    static = set(df.attrs.get("static", []))
    # only accuracy-like columns share an axis; Tables 1, 5, 7 and 10 also hold sizes and throughputs
    keep = [c for c in df.attrs["column_labels"] if c not in static and not any(
        w in c for w in ("param", "size", "throughput", "im/s", "im/sec", "resolution"))]
    data = pd.DataFrame.from_records(
        [{"row": label, "column": col, "ours": df.loc[label, (col, "ours")], "std": df.loc[label, (col, "std")],
          "paper": df.loc[label, (col, "paper")]} for label in df.index for col in keep],
        columns=["row", "column", "ours", "std", "paper"])
    with_ours = data[data["ours"].notna()]
    if with_ours.empty:
        return data[data["paper"].notna()]
    return data[data["row"].isin(set(with_ours["row"])) & data["column"].isin(set(with_ours["column"]))]


def _ours_bars(ax: plt.Axes, shown: pd.DataFrame, order: list[str], hue_order: list[str]) -> None:
    """Our bars, each with its spread across seeds as an error bar and the paper's value as a black tick."""
    sns.barplot(data=shown, y="row", x="ours", hue="column", order=order, hue_order=hue_order, ax=ax,
                errorbar=None, orient="h")
    # seaborn draws one container of bars per column, in hue order, one bar per row in `order`
    for container, col in zip(ax.containers, hue_order):
        sub = shown[shown["column"] == col].set_index("row")
        for bar, row in zip(container, order):
            if row not in sub.index:
                continue
            y = bar.get_y() + bar.get_height() / 2
            std, paper = sub.loc[row, "std"], sub.loc[row, "paper"]
            if not pd.isna(std) and not pd.isna(bar.get_width()):
                ax.errorbar(bar.get_width(), y, xerr=std, color="0.15", capsize=2, lw=1)
            if not pd.isna(paper):
                ax.plot([paper], [y], marker="|", markersize=12, mew=2, color="black")
    ax.plot([], [], marker="|", ls="", markersize=12, mew=2, color="black", label="paper")
    ax.legend(fontsize=8, loc="lower right")


def _heatmap(df: pd.DataFrame) -> plt.Figure:
    labels = df.attrs["column_labels"]
    ours = pd.DataFrame({c: df[(c, "ours")] for c in labels}, index=df.index).astype(float)
    use_paper = ours.isna().all().all()
    mat = pd.DataFrame({c: df[(c, "paper")] for c in labels}, index=df.index).astype(float) if use_paper else ours
    fig, ax = _new((8, 5.5))
    sns.heatmap(mat, annot=True, fmt=".3f", cmap="viridis_r", ax=ax, cbar_kws={"label": "disagreement"})
    who = "paper's values (no predictions of ours stored yet)" if use_paper else f"ours ({df.attrs.get('origin')})"
    ax.set_title(f"Table 4: disagreement, {who}", fontsize=10)
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax.tick_params(axis="y", labelsize=8)
    return fig


# ---------------------------------------------------------------------------------------------------------------


def file_format(path: str | Path) -> str:
    """The figure format a file name asks for (its suffix); UnknownName for one that is not drawn."""
    fmt = Path(path).suffix.lstrip(".").lower()
    if fmt not in FIGURE_FORMATS:
        raise UnknownName(f"unknown figure format '.{fmt}'; formats: {', '.join('.' + f for f in FIGURE_FORMATS)}")
    return fmt


def save(fig: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    fmt = file_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format=fmt, dpi=120)
    plt.close(fig)
    return path


def to_bytes(fig: plt.Figure, fmt: str = "png") -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=110)
    plt.close(fig)
    return buf.getvalue()
