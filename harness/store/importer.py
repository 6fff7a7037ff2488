"""`harness import FILE.csv --source NAME`: results obtained elsewhere, recorded as completed runs.

One CSV row is one run. Columns:

- `spec` (or `--spec`), `variant`: required; `label` (default: the variant), `profile`, `seed` (default 0).
- `config.<dotted.key>`: a config value (e.g. `config.model.name`).
- any other dotted column (`model.name`, `distillation.kind`): an axis coordinate, also set in the config.
- `info.<key>`: a text fact (e.g. `info.note`); `metric.<name>`: a final metric, which must be a number.
- any other column: a final metric when its value is a number, a text fact otherwise.

Config and coordinate values are typed (true/false, integers, floats, null; anything else is text).
Empty cells (and "-", "—", "n/a") are left out. A run's hash is the SHA-256 of the source name and the
row's content, so importing the same file again adds nothing, and a changed row is a new run.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import dotted
from harness.states import RunState
from harness.store.errors import StoreError
from harness.store.store import NewRun, Store

MISSING = {"", "-", "—", "–", "n/a", "na", "nan"}
IDENTITY = ("spec", "variant", "label", "profile", "seed")


@dataclass(frozen=True)
class ImportSummary:
    path: str
    source: str
    rows: int
    new: int
    experiments: tuple[str, ...]


def import_csv(store: Store, path: str | Path, source: str, spec: str | None = None) -> ImportSummary:
    """Read `path` and record each row as a completed run tagged with `source`."""
    groups = read_csv(path, source, spec)
    new = sum(store.import_runs(experiment, runs) for experiment, runs in groups.items())
    return ImportSummary(str(path), source, sum(map(len, groups.values())), new, tuple(groups))


def read_csv(path: str | Path, source: str, spec: str | None = None) -> dict[str, list[NewRun]]:
    """The runs of a CSV file, by experiment (spec) name; a bad file raises StoreError naming row and column."""
    if not source or not source.strip():
        raise StoreError("an import needs a source name (--source NAME)")
    file = Path(path)
    try:
        with open(file, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [h.strip() for h in (reader.fieldnames or [])]
            rows = list(reader)
    except OSError as exc:
        raise StoreError(f"{file}: cannot read ({exc.strerror or exc})") from None
    if "variant" not in header:
        raise StoreError(f"{file}: no 'variant' column (columns: {', '.join(header) or 'none'})")
    if "spec" not in header and spec is None:
        raise StoreError(f"{file}: no 'spec' column; name the spec with --spec")
    groups: dict[str, list[NewRun]] = {}
    for number, raw in enumerate(rows, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        experiment, run = _run(row, file, number, source, spec)
        groups.setdefault(experiment, []).append(run)
    return groups


def _run(row: dict[str, str], file: Path, number: int, source: str, spec: str | None) -> tuple[str, NewRun]:
    where = f"{file}, row {number}"
    experiment = row.get("spec") or spec
    variant = row.get("variant", "")
    if not experiment or not variant:
        raise StoreError(f"{where}: 'spec' and 'variant' must not be empty")
    try:
        seed = int(row.get("seed") or 0)
    except ValueError:
        raise StoreError(f"{where}, column seed: '{row['seed']}' is not an integer") from None
    config: dict[str, Any] = {}
    coords: dict[str, Any] = {}
    final: dict[str, float] = {}
    info: dict[str, str] = {}
    for column, text in row.items():
        if column in IDENTITY or column == "" or text.lower() in MISSING:
            continue
        if column.startswith("config."):
            _set(config, column[len("config."):], _scalar(text))
        elif column.startswith("info."):
            info[column[len("info."):]] = text
        elif column.startswith("metric."):
            number_value = _number(text)
            if number_value is None:
                raise StoreError(f"{where}, column {column}: '{text}' is not a number")
            final[column[len("metric."):]] = number_value
        elif "." in column:
            coords[column] = _scalar(text)
            _set(config, column, coords[column])
        else:
            number_value = _number(text)
            if number_value is None:
                info[column] = text
            else:
                final[column] = number_value
    content = json.dumps({"source": source, "spec": experiment, "row": row}, sort_keys=True)
    return experiment, NewRun(
        hash=hashlib.sha256(content.encode()).hexdigest(), config=config, profile=row.get("profile") or None,
        variant=variant, label=row.get("label") or variant, coords=coords, seed=seed, status=RunState.COMPLETED,
        source=source, final=final, info=info)


def _set(config: dict[str, Any], key: str, value: Any) -> None:
    try:
        dotted.put(config, key, value, replace=False)
    except ValueError as exc:
        raise StoreError(f"config {exc}") from None


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return None if math.isnan(value) else value


def _scalar(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "null":
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text
