"""Table definitions and the paper's reference numbers: data files under `reports/`.

`reports/tables/tableN.yaml` lays out one paper table: its rows and columns, which stored runs fill each
cell (a *match* on spec coordinates: variant names, axis values, resolved config keys, with model aliases
from `reports/models.yaml`), and which metric a cell shows. `reports/paper/tableN.yaml` holds the numbers
the paper prints, each file naming its source (section and table of arXiv:2012.12877v2).

A match is a mapping; every key must hold for a run to fill a cell (a cell needs both its row's and its
column's match):

- `spec`, `variant`, `label`, `profile`: one name or a list of names;
- `any`: a list of matches, at least one of which must hold;
- `model`: alias names from `reports/models.yaml` (each stands for a list of timm model names, paper-scale
  and small-scale, so the quick profile's `deit_tiny_patch4_32` fills the DeiT-Ti column) or model names;
- any other key is a dotted config key (`data.img_size`, `distillation.kind`, `finetune`), looked up in the
  run's axis coordinates first, then in its resolved config. A value is one allowed value or a list of them;
  `null` means unset, `"*"` means set to anything, and `{re: PATTERN}` a regular expression (searched,
  case-insensitive) on the value's text.

An ablation table names its `reference` row, the row every other row is compared with (`harness report
--vs-reference`, `harness.report.significance`). A throughput column names the `paper_device` the paper measured on:
its cells show both devices rather than a difference.

A cell's paper resolution (`TableDef.paper_img_size`: a run at another resolution stands in for the paper's run,
see `harness.report.setting`) is the one the paper prints in the table's image-size column (`metric:
"config:data.img_size"`), else the `img_size` of the row, of the column or of the table; where none is given
it is not checked.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from harness import dotted, shipped

TABLES = (1, 2, 3, 4, 5, 7, 8, 10)


def reports_dir() -> Path:
    """The folder of table definitions and reference numbers (env HARNESS_REPORTS, else the package's)."""
    env = os.environ.get("HARNESS_REPORTS")
    return Path(env) if env else shipped.reports_dir()


@dataclass(frozen=True)
class Column:
    id: str
    label: str
    match: dict[str, Any] = field(default_factory=dict)
    # where our value comes from: a final metric name, or `config:<dotted key>`; None: the row's or table's
    metric: str | None = None
    # multiply our stored value by this before showing it (e.g. 1e-6 for parameters in millions)
    scale: float = 1.0
    # digits after the decimal point
    digits: int | None = None
    # a descriptive column: only the paper's value is shown, ours is never measured
    static: bool = False
    # values an imported paper result takes where the match alone does not say (e.g. for a `re` match)
    witness: dict[str, Any] = field(default_factory=dict)
    # a throughput column: the device the paper measured on; such cells show both devices and no ours − paper
    # difference, since the numbers of two different devices do not subtract
    paper_device: str | None = None
    # the paper's resolution for this column's runs (e.g. 384 for a ↑384 column); None: the table's
    img_size: int | None = None


@dataclass(frozen=True)
class Row:
    id: str
    label: str
    # None: a row of the paper's only (no spec trains it); its cells show the paper's values beside "—"
    match: dict[str, Any] | None = None
    metric: str | None = None
    # text shown in the table's leading descriptive columns (e.g. Table 3's supervision marks)
    info: dict[str, str] = field(default_factory=dict)
    # a group heading shown before this row (e.g. "Convnets")
    group: str | None = None
    witness: dict[str, Any] = field(default_factory=dict)
    # the paper's resolution for this row's runs; None: the column's or the table's
    img_size: int | None = None


@dataclass(frozen=True)
class TableDef:
    number: int
    title: str
    kind: str
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    specs: tuple[str, ...]
    metric: str
    digits: int
    caption: str
    info_columns: tuple[str, ...]
    row_header: str
    paper: "PaperTable"
    # header text of each descriptive column (id -> label)
    info_labels: dict[str, str] = field(default_factory=dict)
    # extra settings of a special kind (Table 4: which variants and heads are compared)
    extra: dict[str, Any] = field(default_factory=dict)
    # id of the row every other row of an ablation is compared with (`reference:`; None: not an ablation)
    reference: str | None = None
    # the resolution of the paper's runs, unless a row or column says otherwise; None: not checked
    img_size: int | None = None

    def paper_img_size(self, row_id: str, col_id: str) -> int | None:
        """The resolution the paper's run of a cell trained at (see the module docstring); None: not known."""
        sizes = [c for c in self.columns if c.metric == "config:data.img_size"]
        printed = self.paper.value(row_id, sizes[0].id) if sizes else None
        if isinstance(printed, (int, float)):
            return int(printed)
        row = next(r for r in self.rows if r.id == row_id)
        col = next(c for c in self.columns if c.id == col_id)
        return next((s for s in (row.img_size, col.img_size, self.img_size) if s is not None), None)


@dataclass(frozen=True)
class PaperTable:
    number: int
    title: str
    source: str
    verified: str
    columns: tuple[str, ...]
    values: dict[str, dict[str, float | str | None]]

    def value(self, row: str, column: str) -> float | str | None:
        return self.values.get(row, {}).get(column)


class DefinitionError(ValueError):
    """A table definition or reference file that does not hold together."""


class UnknownName(KeyError, ValueError):
    """A table, format or figure the report does not have; the message names those it has."""

    def __str__(self) -> str:
        # KeyError would print the message quoted, as if it were the missing key
        return str(self.args[0]) if self.args else ""


def check_table(number: int) -> int:
    if number not in TABLES:
        raise UnknownName(f"no Table {number}; tables: {', '.join(map(str, TABLES))}")
    return number


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DefinitionError(f"{path}: file not found")
    # libyaml's safe loader when present (several times faster); both build plain data only
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
    if not isinstance(data, dict):
        raise DefinitionError(f"{path}: expected a mapping")
    return data


def load_paper(path: Path) -> PaperTable:
    data = _read(path)
    columns = tuple(data["columns"])
    values: dict[str, dict[str, Any]] = {}
    for rid, row in (data.get("rows") or {}).items():
        if len(row) != len(columns):
            raise DefinitionError(f"{path}: row '{rid}' has {len(row)} values for {len(columns)} columns")
        values[str(rid)] = dict(zip(columns, row))
    for key in ("source", "verified"):
        if not data.get(key):
            raise DefinitionError(f"{path}: every reference file names its '{key}'")
    return PaperTable(int(data["table"]), str(data.get("title", "")), " ".join(str(data["source"]).split()),
                      " ".join(str(data["verified"]).split()), columns, values)


@lru_cache(maxsize=4)
def model_aliases(root: str | None = None) -> dict[str, tuple[str, ...]]:
    path = Path(root or reports_dir()) / "models.yaml"
    data = _read(path)
    return {str(k): tuple(v) for k, v in (data.get("models") or {}).items()}


def _str_list(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value)
    return (str(value),)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def load_table(number: int, root: Path | None = None) -> TableDef:
    """Table `number`'s definition and reference numbers (read once per process)."""
    return _load_table(number, str(root or reports_dir()))


@lru_cache(maxsize=64)
def _load_table(number: int, root_text: str) -> TableDef:
    root = Path(root_text)
    path = root / "tables" / f"table{number}.yaml"
    data = _read(path)
    paper = load_paper(root / data.get("paper", f"paper/table{number}.yaml"))
    columns = tuple(
        Column(id=str(c["id"]), label=str(c.get("label", c["id"])), match=dict(c.get("match") or {}),
               metric=c.get("metric"), scale=float(c.get("scale", 1.0)), digits=c.get("digits"),
               static=bool(c.get("static", False)), witness=dict(c.get("witness") or {}),
               paper_device=c.get("paper_device"), img_size=_int(c.get("img_size")))
        for c in data["columns"]
    )
    rows = tuple(
        Row(id=str(r["id"]), label=str(r.get("label", r["id"])),
            match=dict(r["match"]) if r.get("match") is not None else None,
            metric=r.get("metric"), info={str(k): str(v) for k, v in (r.get("info") or {}).items()},
            group=r.get("group"), witness=dict(r.get("witness") or {}), img_size=_int(r.get("img_size")))
        for r in data["rows"]
    )
    known_cols = {c.id for c in columns}
    for cid in paper.columns:
        if cid not in known_cols:
            raise DefinitionError(f"{path}: the paper's column '{cid}' is not a column of the table")
    for rid in paper.values:
        if rid not in {r.id for r in rows}:
            raise DefinitionError(f"{path}: the paper's row '{rid}' is not a row of the table")
    reference = data.get("reference")
    if reference is not None and reference not in {r.id for r in rows}:
        raise DefinitionError(f"{path}: the reference row '{reference}' is not a row of the table")
    info_ids, info_labels = [], {}
    for item in data.get("info_columns") or []:
        (cid, label), = (item.items() if isinstance(item, dict) else [(item, item)])
        info_ids.append(str(cid))
        info_labels[str(cid)] = str(label)
    extra = {k: v for k, v in data.items() if k not in {
        "table", "title", "kind", "columns", "rows", "specs", "metric", "digits", "caption",
        "info_columns", "row_header", "paper", "reference", "img_size"}}
    return TableDef(
        number=int(data["table"]), title=str(data.get("title") or paper.title), kind=str(data.get("kind", "grid")),
        columns=columns, rows=rows, specs=_str_list(data.get("specs")), metric=str(data.get("metric", "top1")),
        digits=int(data.get("digits", 1)),
        caption=" ".join(str(data.get("caption", "")).split()), info_columns=tuple(info_ids), info_labels=info_labels,
        row_header=str(data.get("row_header", "")), paper=paper, extra=extra,
        reference=None if reference is None else str(reference), img_size=_int(data.get("img_size")),
    )


# ---------------------------------------------------------------------------------------------------------------
# matching runs to cells

def lookup(run: Any, key: str) -> Any:
    """A run's value at a dotted key: its axis coordinate, else its resolved config's; `dotted.MISSING` if neither."""
    coords = run.coords or {}
    if key in coords:
        return coords[key]
    return dotted.get(run.config or {}, key, dotted.MISSING)


def _value_ok(actual: Any, wanted: Any) -> bool:
    if isinstance(wanted, list):
        return any(_value_ok(actual, w) for w in wanted)
    if wanted is None:
        return actual is None or actual is dotted.MISSING
    if actual is dotted.MISSING:
        return False
    if wanted == "*":
        return actual is not None
    if isinstance(wanted, dict) and "re" in wanted:
        return actual is not None and re.search(str(wanted["re"]), str(actual), re.IGNORECASE) is not None
    if isinstance(wanted, bool) or isinstance(actual, bool):
        return actual is wanted or actual == wanted
    if isinstance(wanted, (int, float)) and isinstance(actual, (int, float)):
        return float(actual) == float(wanted)
    return str(actual) == str(wanted)


def model_names(names: Any) -> list[str]:
    return list(_model_names(_str_list(names), str(reports_dir())))


@lru_cache(maxsize=512)
def _model_names(names: tuple[str, ...], root: str) -> tuple[str, ...]:
    aliases = model_aliases(root)
    out: list[str] = []
    for name in names:
        out.extend(aliases.get(name, (name,)))
    return tuple(out)


def matches(run: Any, match: dict[str, Any]) -> bool:
    """Whether a stored run (a `RunRecord`) satisfies every key of a match."""
    for key, wanted in match.items():
        if key == "any":
            if not any(matches(run, sub) for sub in wanted):
                return False
        elif key in ("spec", "variant", "label", "profile", "source"):
            if not _value_ok(getattr(run, key), wanted):
                return False
        elif key == "model":
            if not _value_ok(lookup(run, "model.name"), model_names(wanted)):
                return False
        elif not _value_ok(lookup(run, key), wanted):
            return False
    return True
