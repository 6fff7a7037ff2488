"""The paper's tables rebuilt from stored runs, as pandas DataFrames.

`table(n, db=...)` returns one DataFrame per paper table, in the paper's rows (index) and columns. Its columns
are a two-level index `(column label, field)` with fields

- `ours`: the mean over the runs (seeds) that fill the cell, NaN when no run does ("—" when rendered);
- `std`: their standard deviation (ddof=1; NaN for a single run); `n`: how many runs;
- `paper`: the paper's value (NaN where the paper prints none); `diff`: ours − paper (NaN for a throughput
  column: ours and the paper's were measured on different devices, named in `df.attrs["devices"]`).

By default (`vs_reference=None`) a table whose definition names a `reference` row (Tables 2, 3, 8, 10) also has,
per column, `delta` (the cell's mean minus the reference row's in that column), `ci_low`, `ci_high` (its 95%
interval over seeds; NaN where there is none) and `test` ("paired", "welch", "n = 1: no interval", "spread 0 over
3 seeds" (no interval), "reference", or "" where nothing is compared); `n` stays the cell's seed count (see `harness.report.significance`). With
`detect=D` also `need`: the seeds the cell needs to resolve a difference of D points. With `cost=True` each
column also has `gpu_h` and `cpu_h`: the GPU-hours and CPU core-hours of the cell's runs (see `harness.report.cost`).

Descriptive columns (Table 3's supervision marks, Table 8's ✓/✗) come first as `(name, "")`. Everything
else a renderer needs sits in `df.attrs`: the table number, title, caption, which origin of runs it shows
(`origin`: paper scale, a profile, or an imported source), the paper's source, and the runs used. Where any
run shown stands in for the paper's setting (`harness.report.setting`), `stand_ins` says what the runs were
(datasets, resolutions, epochs, models, teachers) and the caption starts with it; else `stand_ins` is None.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Iterable

import numpy as np
import pandas as pd

from harness import dotted
from harness.provenance import DATA_ORDER_BEFORE
from harness.report import cost as costs
from harness.report import definitions as defs
from harness.report import setting
from harness.report import significance as sig
from harness.report.runs import PAPER_SCALE, Origin, RunSet, load, origin_of, parse_profile
from harness.words import count

def _num(value: Any) -> float:
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def run_value(run: Any, metric: str, scale: float = 1.0) -> float:
    """One run's value for a cell: a final metric, or `config:<dotted key>`; NaN when absent."""
    if metric.startswith("config:"):
        key = metric.split(":", 1)[1]
        value = defs.lookup(run, key)
        return math.nan if value is dotted.MISSING else _num(value) * scale
    # accuracies are stored in percent (the trainer's `top1_unit` info), like the paper prints them
    return _num((run.final or {}).get(metric)) * scale


def summarize(values: Iterable[float]) -> tuple[float, float, int]:
    vals = [v for v in values if not math.isnan(v)]
    if not vals:
        return math.nan, math.nan, 0
    arr = np.asarray(vals, dtype=float)
    std = float(arr.std(ddof=1)) if len(arr) > 1 else math.nan
    return float(arr.mean()), std, len(arr)


def cell_runs(td: defs.TableDef, runs: list[Any]) -> dict[tuple[str, str], list[Any]]:
    """{(row id, column id): the runs that fill that cell} (a run must match both the row and the column)."""
    out: dict[tuple[str, str], list[Any]] = {}
    for row in td.rows:
        if row.match is None:
            continue
        in_row = [r for r in runs if defs.matches(r, row.match)]
        for col in td.columns if in_row else ():
            if not col.static:
                members = [r for r in in_row if defs.matches(r, col.match)]
                if members:
                    out[(row.id, col.id)] = members
    return out


def choose_origin(td: defs.TableDef, runs: list[Any], profile: str | None = None,
                  source: str | None = None) -> tuple[Origin | None, list[Any]]:
    """The origin a table shows, and its runs that fill at least one cell.

    Default: our paper-scale runs when any fill the table; else the profile of ours filling most cells; else
    an imported source. `profile` / `source` pick one instead.
    """
    chosen, wanted = parse_profile(profile)
    by_origin: dict[Origin, list[Any]] = defaultdict(list)
    for run in runs:
        origin = origin_of(run)
        if chosen and origin.profile != wanted:
            continue
        if source is not None and origin.source != source:
            continue
        by_origin[origin].append(run)
    filled = _filled(td, by_origin)
    if not filled:
        if chosen or source is not None:
            return Origin(source, wanted), []
        return None, []
    best = min(filled, key=lambda o: (o.rank()[0], -filled[o][0], o.rank()[1]))
    return best, filled[best][1]


def _filled(td: defs.TableDef, by_origin: dict[Origin, list[Any]]) -> dict[Origin, tuple[int, list[Any]]]:
    """Each origin whose runs fill at least one cell: (cells filled, the runs that fill them)."""
    filled: dict[Origin, tuple[int, list[Any]]] = {}
    for origin, members in by_origin.items():
        if td.kind == "disagreement":
            used = [r for r in members if _compared(td, r)]
            count = len(used)
        else:
            cells = cell_runs(td, members)
            hashes = {r.hash for rs in cells.values() for r in rs}
            used = [r for r in members if r.hash in hashes]
            count = len(cells)
        if used:
            filled[origin] = (count, used)
    return filled


def elsewhere(td: defs.TableDef, runset: RunSet, spec: str | None, shown: Origin | None) -> list[tuple[Origin, int]]:
    """The other origins whose runs fill this table, with their run counts, best first: a table asked for under
    one profile (or paper scale, the default when such runs exist) must not look unfilled when another has runs."""
    by_origin: dict[Origin, list[Any]] = defaultdict(list)
    for run in _table_runs(td, runset, spec):
        if origin_of(run) != shown:
            by_origin[origin_of(run)].append(run)
    filled = _filled(td, by_origin)
    return [(o, len(filled[o][1])) for o in sorted(filled, key=lambda o: (o.rank()[0], -filled[o][0], o.rank()[1]))]


def switch_to(n: int, origin: Origin) -> str:
    """The command that shows table `n` from `origin`'s runs."""
    pick = f" --source {origin.source}" if origin.source is not None else ""
    return f"harness report --table {n}{pick} --profile {origin.profile or PAPER_SCALE}"


def _compared(td: defs.TableDef, run: Any) -> bool:
    """Whether a run takes part in Table 4: a compared run, or an imported result with disagreement cells."""
    return any(defs.matches(run, td.extra[k]) for k in ("distilled", "baseline")) or any(
        k.startswith("disagree_") for k in (run.final or {}))


Cells = dict[tuple[str, str], tuple[float, float, int]]


def _frame(td: defs.TableDef, cells: Cells) -> pd.DataFrame:
    """The table's DataFrame from {(row id, column id): (mean, std, n)}; the paper's values beside."""
    data: dict[tuple[str, str], list[Any]] = {}
    for name in td.info_columns:
        data[(td.info_labels.get(name, name), "")] = [row.info.get(name, "") for row in td.rows]
    for col in td.columns:
        paper = [_num(td.paper.value(row.id, col.id)) if col.id in td.paper.columns else math.nan for row in td.rows]
        got = [cells.get((row.id, col.id), (math.nan, math.nan, 0)) for row in td.rows]
        data[(col.label, "ours")] = [g[0] for g in got]
        data[(col.label, "std")] = [g[1] for g in got]
        data[(col.label, "n")] = [int(g[2]) for g in got]
        data[(col.label, "paper")] = paper
        # two devices' throughputs do not subtract: a throughput column shows both numbers and both devices
        data[(col.label, "diff")] = [math.nan if col.paper_device else g[0] - p for g, p in zip(got, paper)]
    df = pd.DataFrame(data, index=pd.Index([r.label for r in td.rows], name=td.row_header or None))
    df.columns = pd.MultiIndex.from_tuples(list(data))
    return df


def _attrs(td: defs.TableDef, origin: Origin | None, used: list[Any], stand_ins: str | None) -> dict[str, Any]:
    reference = next((r.label for r in td.rows if r.id == td.reference), None)
    return {
        "table": td.number,
        "title": td.title,
        # what the runs were, where they are not the paper's setting, then the definition's caption
        "caption": " ".join(text for text in (stand_ins, td.caption) if text),
        "stand_ins": stand_ins,
        "origin": origin.label if origin else None,
        "profile": origin.profile if origin else None,
        "source": origin.source if origin else None,
        "paper_source": td.paper.source,
        "paper_verified": td.paper.verified,
        "runs": sorted({r.hash for r in used}),
        "row_ids": [r.id for r in td.rows],
        "row_groups": {r.label: r.group for r in td.rows if r.group is not None},
        "column_ids": [c.id for c in td.columns],
        "column_labels": [c.label for c in td.columns],
        "digits": {c.label: (c.digits if c.digits is not None else td.digits) for c in td.columns},
        "static": [c.label for c in td.columns if c.static],
        "paper_raw": {r.label: {c.label: td.paper.value(r.id, c.id) for c in td.columns} for r in td.rows},
        "static_values": {r.label: {c.label: td.paper.value(r.id, c.id) for c in td.columns if c.static}
                          for r in td.rows},
        "info_columns": [td.info_labels.get(name, name) for name in td.info_columns],
        "specs": list(td.specs),
        "reference": reference,
        "paper_devices": {c.label: c.paper_device for c in td.columns if c.paper_device},
    }


def select_runs(td: defs.TableDef, runset: RunSet, spec: str | None, profile: str | None,
            source: str | None) -> tuple[Origin | None, list[Any]]:
    """The table's origin and runs: those of its spec(s) (or `spec`), one origin (see `choose_origin`)."""
    return choose_origin(td, _table_runs(td, runset, spec), profile, source)


def _table_runs(td: defs.TableDef, runset: RunSet, spec: str | None) -> list[Any]:
    specs = [spec] if spec else list(td.specs)
    runs = runset.in_specs(specs) if specs else list(runset.runs)
    # imported results name the spec they belong to; results of no spec count for every table
    seen = {r.hash for r in runs}
    return runs + [r for r in runset.imported_without_spec() if r.hash not in seen]


def build_grid(td: defs.TableDef, runset: RunSet, spec: str | None = None, profile: str | None = None,
               source: str | None = None, vs_reference: bool | None = None, cost: bool = False,
               detect: float | None = None) -> pd.DataFrame:
    origin, used = select_runs(td, runset, spec, profile, source)
    members_of = cell_runs(td, used)
    samples = cell_samples(td, members_of)
    df = _frame(td, {key: summarize(v for _, v in values) for key, values in samples.items()})
    stand_ins = setting.caption((r, td.paper_img_size(rid, cid)) for (rid, cid), rs in members_of.items() for r in rs)
    df.attrs.update(_attrs(td, origin, used, stand_ins))
    df.attrs["elsewhere"] = [(o.label, n, switch_to(td.number, o)) for o, n in elsewhere(td, runset, spec, origin)]
    df.attrs["devices"] = _devices(td, members_of)
    notes: list[str] = []
    if vs_reference is None:
        vs_reference = td.reference is not None or detect is not None
    if vs_reference:
        df = _with_fields(df, td, _comparisons(td, samples, detect))
        notes += _reference_notes(td, df, detect)
    if cost:
        df = _with_fields(df, td, _cell_costs(td, members_of))
        spent = costs.hours_text(costs.total(used))
        notes.append(f"Cost: {spent or 'no stored training time'} for the {len(used)} runs shown "
                     "(stored training time × processes; a run filling several cells counts once).")
    notes += mixed_cells(td, members_of)
    df.attrs["notes"] = notes
    return df


Members = dict[tuple[str, str], list[Any]]


def _data_order(run: Any) -> str:
    return f"v{(getattr(run, 'provenance', None) or {}).get('data_order', DATA_ORDER_BEFORE)}"


def _precision(run: Any) -> str:
    # the precision the run resolved (`auto`: bf16 or fp16), else the one its config named
    resolved = (getattr(run, "info", None) or {}).get("precision")
    named = defs.lookup(run, "precision")
    return str(resolved or (named if named is not dotted.MISSING else "fp32"))


def mixed_cells(td: defs.TableDef, members_of: Members) -> list[str]:
    """One note per property that differs between the runs of a cell: the data-order version of the code that
    trained them (harness.provenance.DATA_ORDER) and the precision they trained in. Their mean is then no one
    setting's."""
    rows, cols = {r.id: r.label for r in td.rows}, {c.id: c.label for c in td.columns}
    notes = []
    for what, key in (("data orders (harness code versions)", _data_order), ("training precisions", _precision)):
        mixed = []
        for (rid, cid), members in members_of.items():
            kinds = sorted({key(r) for r in members})
            if len(kinds) > 1:
                counts = ", ".join(f"{k}: {count(sum(key(r) == k for r in members), 'run')}" for k in kinds)
                mixed.append(f"{rows[rid]} / {cols[cid]} ({counts})")
        if mixed:
            notes.append(f"Cells mixing runs of different {what}: " + "; ".join(mixed) + ".")
    return notes


def cell_samples(td: defs.TableDef, members_of: Members) -> dict[tuple[str, str], sig.Samples]:
    """{(row id, column id): [(seed, value) per run]} for the cells that runs fill."""
    rows, cols = {r.id: r for r in td.rows}, {c.id: c for c in td.columns}
    out: dict[tuple[str, str], sig.Samples] = {}
    for (rid, cid), members in members_of.items():
        metric = rows[rid].metric or cols[cid].metric or td.metric
        out[(rid, cid)] = [(r.seed, run_value(r, metric, cols[cid].scale)) for r in members]
    return out


def compare_cells(td: defs.TableDef,
                  samples: dict[tuple[str, str], sig.Samples]) -> dict[tuple[str, str], sig.Difference]:
    """Each filled cell of a comparable column against the reference row's cell of that column."""
    out: dict[tuple[str, str], sig.Difference] = {}
    for col in td.columns if td.reference else ():
        ref = samples.get((td.reference or "", col.id))  # the loop runs only with a reference
        if not ref or col.static or (col.metric or "").startswith("config:"):
            continue  # nothing to compare with, or a configuration value rather than a measurement
        for row in td.rows:
            cell = samples.get((row.id, col.id))
            if cell:
                out[(row.id, col.id)] = sig.Difference(math.nan, math.nan, math.nan, sig.REFERENCE) \
                    if row.id == td.reference else sig.difference(cell, ref)
    return out


def _devices(td: defs.TableDef, members_of: Members) -> dict[str, dict[str, str]]:
    """{row label: {column label: the devices our runs measured on}} for throughput columns."""
    out: dict[str, dict[str, str]] = {}
    for row in td.rows:
        for col in td.columns:
            members = members_of.get((row.id, col.id), [])
            names = sorted({str((getattr(r, "info", None) or {}).get("device")) for r in members
                            if (getattr(r, "info", None) or {}).get("device")})
            if col.paper_device and names:
                out.setdefault(row.label, {})[col.label] = ", ".join(names)
    return out


Fields = dict[tuple[str, str], list[Any]]


def _with_fields(df: pd.DataFrame, td: defs.TableDef, extra: Fields) -> pd.DataFrame:
    """`df` with more fields per column, each column's fields kept together; attrs kept."""
    attrs = dict(df.attrs)
    added = pd.DataFrame(extra, index=df.index)
    added.columns = pd.MultiIndex.from_tuples(list(extra))
    out = pd.concat([df, added], axis=1)
    order = [key for key in df.columns if key[1] == ""]
    for col in td.columns:
        order += [key for key in out.columns if key[0] == col.label]
    out = out[order]
    out.attrs = attrs
    return out


def _comparisons(td: defs.TableDef, samples: dict[tuple[str, str], sig.Samples], detect: float | None) -> Fields:
    """delta, ci_low, ci_high, test (and need) per cell, against the reference row of the same column."""
    names = ("delta", "ci_low", "ci_high", "test") + (("need",) if detect is not None else ())
    compared = compare_cells(td, samples)
    empty = sig.Difference(math.nan, math.nan, math.nan, "")
    fields: Fields = {}
    for col in td.columns:
        values: dict[str, list[Any]] = {name: [] for name in names}
        for row in td.rows:
            result = compared.get((row.id, col.id), empty)
            need = sig.seeds_needed(result.sd, detect, paired=result.test == sig.PAIRED) if detect else None
            for name, value in zip(names, (result.delta, result.low, result.high, result.test,
                                           math.nan if need is None else need)):
                values[name].append(value)
        fields.update({(col.label, name): values[name] for name in names})
    return fields


def _reference_notes(td: defs.TableDef, df: pd.DataFrame, detect: float | None) -> list[str]:
    if td.reference is None:
        return [f"Table {td.number} names no reference row: no differences shown."]
    label = next(r.label for r in td.rows if r.id == td.reference)
    out = [f"Δ: difference to '{label}' (mean over seeds) with its 95% confidence interval: paired by seed where "
           "both cells hold the same seeds, Welch's otherwise; * : the interval excludes 0; no interval (and no *) "
           "where the seeds show no spread at all."]
    if detect is not None:
        out.append(seed_note(df, detect))
    return out


def seed_note(df: pd.DataFrame, detect: float) -> str:
    """One line: how many seeds each row needs (its most demanding column) to resolve `detect` points."""
    parts = []
    for row in df.index:
        needs = [(df.loc[row, (c, "need")], int(df.loc[row, (c, "n")])) for c in df.attrs["column_labels"]
                 if (c, "need") in df.columns and df.loc[row, (c, "test")] not in ("", sig.REFERENCE)]
        if not needs:
            continue
        known = [n for n in needs if not pd.isna(n[0])]
        need, has = max(known) if known else (None, max(h for _, h in needs))
        parts.append(f"{row}: {'?' if need is None else int(need)} (has {has})")
    return (f"Seeds to resolve a {detect:g}-point difference at 95% confidence and 80% power (from the stored "
            f"spread; ?: unknown, from fewer than two seeds or a spread of zero): " + ("; ".join(parts) or "no row to compare") + ".")


def _cell_costs(td: defs.TableDef, members_of: Members) -> Fields:
    fields: Fields = {}
    for col in td.columns:
        totals = [costs.total(members_of.get((row.id, col.id), [])) for row in td.rows]
        fields[(col.label, "gpu_h")] = [t.gpu_h for t in totals]
        fields[(col.label, "cpu_h")] = [t.cpu_h for t in totals]
    return fields


# ---------------------------------------------------------------------------------------------------------------
# Table 4: disagreement between classifiers, from stored predictions


def disagreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of samples on which two arrays of class indices (or of logits) differ."""
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim == 2:
        a = a.argmax(1)
    if b.ndim == 2:
        b = b.argmax(1)
    if a.shape != b.shape:
        raise ValueError(f"prediction arrays of different lengths: {a.shape} vs {b.shape}")
    return float(np.mean(a != b)) if a.size else math.nan


def build_disagreement(td: defs.TableDef, runset: RunSet, spec: str | None = None, profile: str | None = None,
                       source: str | None = None) -> pd.DataFrame:
    origin, used = select_runs(td, runset, spec, profile, source)
    notes: list[str] = []
    classifiers: dict[str, list[str]] = td.extra["classifiers"]
    ids = [r.id for r in td.rows]
    label_of = {r.id: r.label for r in td.rows}
    col_label = {c.id: c.label for c in td.columns}
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    shown: list[Any] = []
    # imported results: one metric per cell
    for run in used:
        for key, value in (run.final or {}).items():
            if key.startswith("disagree_") and "__" in key:
                a, b = key[len("disagree_"):].split("__", 1)
                if a in label_of and b in col_label:
                    values[(a, b)].append(_num(value))
                    shown.append(run)
    if not values:
        size_label, pairs = _prediction_pairs(td, used)
        for distilled, baseline in pairs:
            preds = {"distilled": runset.predictions(distilled.hash),
                     "baseline": runset.predictions(baseline.hash) if baseline is not None else {}}
            arrays: dict[str, np.ndarray] = {}
            for cid, (which, name) in classifiers.items():
                source_preds = preds[which]
                if name in source_preds:
                    arrays[cid] = source_preds[name]
                elif which == "baseline" and "cls" in source_preds:
                    arrays[cid] = source_preds["cls"]
            for a in ids:
                for b in ids:
                    if a in arrays and b in arrays:
                        values[(a, b)].append(disagreement(arrays[a], arrays[b]))
            shown += [distilled] + ([baseline] if baseline is not None else [])
        if size_label:
            notes.append(f"Models compared: {size_label} ({count(len(pairs), 'seed')}).")
    df = _frame(td, {key: summarize(vals) for key, vals in values.items()})
    df.attrs.update(_attrs(td, origin, shown, setting.caption((r, td.img_size) for r in shown)))
    df.attrs["elsewhere"] = [(o.label, n, switch_to(td.number, o)) for o, n in elsewhere(td, runset, spec, origin)]
    df.attrs["notes"] = notes
    return df


def _prediction_pairs(td: defs.TableDef, used: list[Any]) -> tuple[str | None, list[tuple[Any, Any]]]:
    """(model size shown, [(distilled run, matching no-distillation run or None)]) for the largest size that
    has a distilled run with stored predictions."""
    for size in td.extra.get("sizes", []):
        distilled = [r for r in used if defs.matches(r, td.extra["distilled"]) and defs.matches(r, size["match"])]
        if not distilled:
            continue
        baselines = [r for r in used if defs.matches(r, td.extra["baseline"]) and defs.matches(r, size["match"])]
        pairs = []
        for d in sorted(distilled, key=lambda r: (r.seed is None, r.seed)):
            same_seed = [b for b in baselines if b.seed == d.seed] or baselines
            pairs.append((d, same_seed[0] if same_seed else None))
        return str(size["label"]), pairs
    return None, []


# ---------------------------------------------------------------------------------------------------------------


def table(n: int, db: str | None = None, spec: str | None = None, profile: str | None = None,
          source: str | None = None, runset: RunSet | None = None, store: Any = None, vs_reference: bool | None = None,
          cost: bool = False, detect: float | None = None) -> pd.DataFrame:
    """The paper's Table `n` rebuilt from the store at `db` (see the module docstring for the layout).

    `spec` replaces the table's own spec(s); `profile` shows one profile's runs (`paper-scale` for runs without
    a profile); `source` shows one imported source. By default the table shows our paper-scale runs when any
    exist, else the profile filling most cells, else imported results; `df.attrs['origin']` says which.
    `vs_reference` (default: where the table names a reference row) adds each cell's difference to that row with
    its interval, `detect` the seeds needed to resolve that many points, `cost` the GPU-hours of each cell
    (Table 4 takes none of them).
    """
    td = defs.load_table(defs.check_table(n))
    if runset is None:
        runset = load(db, store)
    if td.kind == "disagreement":
        return build_disagreement(td, runset, spec, profile, source)
    return build_grid(td, runset, spec, profile, source, vs_reference, cost, detect)


def tables(db: str | None = None, spec: str | None = None, profile: str | None = None,
           source: str | None = None, store: Any = None, **options: Any) -> dict[int, pd.DataFrame]:
    """Every table, reading the store once (`options`: those of `table`)."""
    runset = load(db, store)
    return {n: table(n, spec=spec, profile=profile, source=source, runset=runset, **options) for n in defs.TABLES}
