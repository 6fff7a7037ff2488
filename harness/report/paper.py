"""The paper's own numbers as importable results: one run per paper model/setting, its metrics the paper's.

`paper_runs()` turns every filled cell of `reports/paper/*.yaml` into results that the table definitions
map back to the same cells (each run's spec, variant and config satisfy the cell's match). Written as CSV
(`write_csv`, committed as `reports/paper/deit_paper_results.csv`) they are what
`harness import reports/paper/deit_paper_results.csv --source paper` records; a store holding only them
rebuilds every table equal to the paper's (up to the paper's own rounding where two tables print the same
measurement with different precision, e.g. Table 1's throughput is Table 5's rounded).

    python -c "from harness.report import paper; paper.write_csv('reports/paper/deit_paper_results.csv')"
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import math
from pathlib import Path
from typing import Any

from harness import dotted
from harness.report import definitions as defs
from harness.states import RunState
from harness.store import NewRun

# columns of the import CSV that are not metrics
ID_COLUMNS = ("spec", "variant", "label", "seed", "profile")
CONFIG_PREFIX = "config."
METRIC_PREFIX = "metric."


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) else value


def _witness(match: dict[str, Any], ident: dict[str, Any], config: dict[str, Any]) -> None:
    """Fill `ident` (spec/variant/...) and `config` with values that satisfy `match`."""
    for key, wanted in match.items():
        if key == "any":
            _witness(wanted[0], ident, config)
            continue
        value = _first(wanted)
        if key in ("spec", "variant", "label", "profile", "source"):
            if isinstance(value, dict):
                continue  # a pattern: the definition's `witness` names the value
            ident[key] = value
        elif key == "model":
            dotted.put(config, "model.name", defs.model_names(value)[0])
        elif isinstance(value, dict):
            continue
        elif value == "*":
            dotted.put(config, key, {"from_run": "paper", "checkpoint": None})
        else:
            dotted.put(config, key, value)


def _alternatives(match: dict[str, Any]) -> list[dict[str, Any]]:
    if "any" not in match:
        return [match]
    rest = {k: v for k, v in match.items() if k != "any"}
    return [{**rest, **alt} for alt in match["any"]]


def _apply(overrides: dict[str, Any], ident: dict[str, Any], config: dict[str, Any]) -> None:
    for key, value in overrides.items():
        if key in ("spec", "variant", "label", "profile"):
            ident[key] = value
        else:
            dotted.put(config, key, value)


class _Run:
    def __init__(self, ident: dict[str, Any], config: dict[str, Any]):
        self.spec = ident.get("spec")
        self.variant = ident.get("variant")
        self.label = ident.get("label") or self.variant
        self.profile = None
        self.source = "paper"
        self.seed = 0
        self.coords: dict[str, Any] = {}
        self.config = config
        self.final: dict[str, float] = {}
        self.status = RunState.COMPLETED.value
        self.hash = ""


def paper_runs(numbers: tuple[int, ...] = defs.TABLES) -> list[_Run]:
    """One result per distinct paper run behind the given tables' filled cells (later tables never overwrite a
    value an earlier one gave: Table 5 is read before Table 1, whose throughputs are Table 5's rounded)."""
    order = sorted(numbers, key=lambda n: (n != 5, n))
    runs: dict[str, _Run] = {}
    for n in order:
        td = defs.load_table(n)
        if td.kind == "disagreement":
            _disagreement_run(td, runs)
            continue
        for row in td.rows:
            if row.match is None:
                continue
            cells = [(col, td.paper.value(row.id, col.id)) for col in td.columns]
            measured = [(col, v) for col, v in cells if not col.static and isinstance(v, (int, float))]
            # values the paper gives as configuration (image size, resolution) describe the row's run
            row_config = {(row.metric or col.metric or "").split(":", 1)[1]: v for col, v in measured
                          if (row.metric or col.metric or "").startswith("config:")}
            for col, value in measured:
                metric = row.metric or col.metric or td.metric
                run = None
                # a row matching one of several alternatives (`any`): the first that fits this column
                for alternative in _alternatives(row.match):
                    ident: dict[str, Any] = {"spec": td.specs[0] if td.specs else None,
                                             "variant": f"paper_{row.id}", "label": row.label}
                    config: dict[str, Any] = {}
                    _witness(alternative, ident, config)
                    _witness(col.match, ident, config)
                    _apply(row.witness, ident, config)
                    _apply(col.witness, ident, config)
                    _apply(row_config, ident, config)
                    candidate = _Run(ident, config)
                    if defs.matches(candidate, row.match) and defs.matches(candidate, col.match):
                        run = _get(runs, ident, config)
                        break
                if run is None:
                    raise defs.DefinitionError(f"Table {n}: cannot build a paper result for cell "
                                               f"({row.id}, {col.id}); give the row or column a `witness`")
                if not metric.startswith("config:"):
                    run.final.setdefault(metric, float(value) / col.scale)
    return list(runs.values())


def _get(runs: dict[str, _Run], ident: dict[str, Any], config: dict[str, Any]) -> _Run:
    key = json.dumps([ident.get("spec"), ident.get("variant"), config], sort_keys=True, default=str)
    if key not in runs:
        run = _Run(dict(ident), copy.deepcopy(config))
        run.hash = hashlib.sha256(("paper:" + key).encode()).hexdigest()
        runs[key] = run
    return runs[key]


def _disagreement_run(td: defs.TableDef, runs: dict[str, _Run]) -> None:
    ident: dict[str, Any] = {"spec": td.specs[0] if td.specs else None, "label": "DeiT-B⚗ (Table 4)"}
    config: dict[str, Any] = {}
    _witness(td.extra["distilled"], ident, config)
    _witness(td.extra["sizes"][0]["match"], ident, config)
    run = _get(runs, ident, config)
    for row in td.rows:
        for col in td.columns:
            value = td.paper.value(row.id, col.id)
            if value is not None:
                run.final[f"disagree_{row.id}__{col.id}"] = float(value)


# ---------------------------------------------------------------------------------------------------------------


def rows(runs: list[_Run] | None = None) -> list[dict[str, Any]]:
    """The results as flat CSV rows: spec, variant, label, seed, profile, `config.<dotted key>`, `metric.<name>`."""
    out = []
    for run in runs if runs is not None else paper_runs():
        row: dict[str, Any] = {"spec": run.spec or "", "variant": run.variant or "", "label": run.label or "",
                               "seed": run.seed, "profile": ""}
        for k, v in dotted.flatten(run.config).items():
            if isinstance(v, dict):
                continue  # an empty mapping: nothing a CSV cell could hold
            row[CONFIG_PREFIX + k] = "" if v is None else (json.dumps(v) if isinstance(v, bool) else v)
        for k, v in run.final.items():
            row[METRIC_PREFIX + k] = "" if v is None or (isinstance(v, float) and math.isnan(v)) else repr(v)
        out.append(row)
    return out


def write_csv(path: str | Path, runs: list[_Run] | None = None) -> Path:
    """Write the paper's results as an import CSV (see `rows`)."""
    data = rows(runs)
    fields: list[str] = list(ID_COLUMNS)
    for row in data:
        fields += [k for k in row if k not in fields]
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(data)
    return path


def import_paper(store: Any, source: str = "paper") -> int:
    """Record the paper's results in `store` through its import API (what `harness import` calls)."""
    total = 0
    by_spec: dict[str, list[Any]] = {}
    for run in paper_runs():
        by_spec.setdefault(run.spec or "paper", []).append(NewRun(
            hash=run.hash, config=run.config, profile=None, variant=run.variant or "", label=run.label or "",
            coords={}, seed=0, status=RunState.COMPLETED, source=source, final=run.final,
            info={"reference": "Touvron et al., arXiv:2012.12877v2"}))
    for spec, new in by_spec.items():
        total += store.import_runs(spec, new)
    return total
