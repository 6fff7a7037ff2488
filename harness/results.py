"""The results store as pandas DataFrames: what notebooks and reports read.

    import harness.results as r
    r.runs()                                   # one row per run (default store: HARNESS_DB or runs/harness.db)
    r.runs(spec="distillation", status="completed", where={"model.name": "deit_tiny_patch16_224"})
    r.metrics(spec="distillation", names=["top1"])   # tidy: hash, epoch, name, value (+ run identity)

`runs` columns: hash, spec, variant, label, profile, seed, status, source, epoch, host, started_at,
ended_at, error; then one column per axis coordinate (named by its dotted key); the final metrics
(top1, top5, params, ...); the final text facts as `info.<key>`; and the resolved config flattened
as `config.<dotted.key>`. A `where` filter matches a column by name, or `config.<key>` when no
column has that name; values compare as numbers, booleans or text. Filters are applied in pandas,
never pasted into SQL.
"""

from __future__ import annotations

import difflib
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from harness import dotted
from harness.store import RunRecord, Store, open_store

BASE_COLUMNS = ["hash", "spec", "variant", "label", "profile", "seed", "status", "source", "epoch", "host",
                "started_at", "ended_at", "error"]
IDENTITY = ["hash", "spec", "variant", "label", "profile", "seed"]
Where = Mapping[str, Any] | Sequence[str] | Sequence[tuple[str, Any]] | None


def runs(db: str | Store | None = None, spec: str | None = None, status: str | Sequence[str] | None = None,
         where: Where = None, profile: str | None = None, source: str | None = None) -> pd.DataFrame:
    """One row per run: identity, status, axis coordinates, final metrics, info and flattened config."""
    with _opened(db) as store:
        records = store.runs(spec=spec, status=status, profile=profile, source=source)
    return filter_frame(frame(records), where)


def metrics(db: str | Store | None = None, spec: str | None = None, status: str | Sequence[str] | None = None,
            where: Where = None, profile: str | None = None, names: Iterable[str] | None = None) -> pd.DataFrame:
    """Per-epoch metrics, tidy: hash, spec, variant, label, profile, seed, epoch, name, value."""
    name_list = None if names is None else list(names)
    with _opened(db) as store:
        records = store.runs(spec=spec, status=status, profile=profile)
        chosen = filter_frame(frame(records), where)
        everything = spec is None and status is None and profile is None and not where
        rows = store.metrics(None if everything else list(chosen["hash"]), names=name_list)
    tidy = pd.DataFrame(rows, columns=["hash", "epoch", "name", "value"])
    if chosen.empty or tidy.empty:
        return pd.DataFrame(columns=IDENTITY + ["epoch", "name", "value"])
    return tidy.merge(chosen[IDENTITY], on="hash", how="inner")[IDENTITY + ["epoch", "name", "value"]]


def frame(records: Sequence[RunRecord]) -> pd.DataFrame:
    """RunRecords -> the wide DataFrame that `runs` returns (built column block by column block)."""
    base = pd.DataFrame({column: [getattr(rec, column) for rec in records] for column in BASE_COLUMNS},
                        columns=BASE_COLUMNS)
    for column in ("started_at", "ended_at"):
        base[column] = pd.to_datetime(base[column], utc=True)
    base["seed"] = base["seed"].astype("Int64")
    base["epoch"] = base["epoch"].astype("Int64")
    if not records:
        return base
    blocks = [base]
    taken = set(BASE_COLUMNS)
    for part, prefix in (("coords", ""), ("final", ""), ("info", "info.")):
        block = pd.DataFrame.from_records([getattr(rec, part) for rec in records], index=base.index)
        block = block.rename(columns=lambda c: f"{prefix}{c}")
        block = block[[c for c in block.columns if c not in taken]]
        taken.update(block.columns)
        blocks.append(block)
    # one list per dotted config key, a value (or None) per record
    columns: dict[str, list[Any]] = {}
    for row, rec in enumerate(records):
        for name, item in dotted.flatten(rec.config, "config.").items():
            cells = columns.setdefault(name, [])
            cells.extend([None] * (row - len(cells)))
            # a list cell becomes a tuple, which hashes: pandas can group by it and compare it
            cells.append(tuple(item) if isinstance(item, list) else item)
    for values in columns.values():
        values.extend([None] * (len(records) - len(values)))
    blocks.append(pd.DataFrame(columns, index=base.index))
    return pd.concat(blocks, axis=1)


def parse_where(where: Where) -> list[tuple[str, Any]]:
    """KEY=VALUE strings, (key, value) pairs or a mapping -> [(key, value)]."""
    if where is None:
        return []
    if isinstance(where, Mapping):
        return list(where.items())
    pairs = []
    for item in where:
        if isinstance(item, str):
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"a filter is KEY=VALUE, got '{item}'")
            pairs.append((key.strip(), value))
        else:
            key, value = item
            pairs.append((key, value))
    return pairs


def filter_frame(df: pd.DataFrame, where: Where) -> pd.DataFrame:
    """Keep the rows whose columns equal every filter value (see the module docstring)."""
    pairs = parse_where(where)
    if not pairs or df.empty:
        return df
    mask = pd.Series(True, index=df.index)
    for key, value in pairs:
        column = _column(df, key)
        mask &= df[column].map(lambda cell, v=value: _matches(cell, v))
    return df[mask].reset_index(drop=True)


def _column(df: pd.DataFrame, key: str) -> str:
    for candidate in (key, f"config.{key}"):
        if candidate in df.columns:
            return candidate
    close = difflib.get_close_matches(key, list(df.columns), n=5)
    hint = f"; did you mean: {', '.join(close)}" if close else ""
    raise ValueError(f"no column or config key '{key}' in these runs{hint}")


def _matches(cell: Any, wanted: Any) -> bool:
    if cell is None or (isinstance(cell, float) and pd.isna(cell)):
        return isinstance(wanted, str) and wanted.lower() in ("", "none", "null") or wanted is None
    if not isinstance(wanted, str):
        return bool(cell == wanted)
    text = wanted.strip()
    if isinstance(cell, bool):
        return text.lower() in (("true", "1", "yes") if cell else ("false", "0", "no"))
    if isinstance(cell, (int, float)):
        try:
            return float(text) == float(cell)
        except ValueError:
            return False
    return str(cell) == text


class _opened:
    """A store from a URL (opened here, read-only, and closed) or one the caller holds (left open)."""

    def __init__(self, db: str | Store | None):
        self.db = db
        self.store: Store | None = None

    def __enter__(self) -> Store:
        if isinstance(self.db, Store):
            return self.db
        self.store = open_store(self.db, create=False)
        return self.store

    def __exit__(self, *exc: object) -> None:
        if self.store is not None:
            self.store.close()
