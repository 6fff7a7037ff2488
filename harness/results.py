"""The results store as pandas DataFrames: what notebooks and reports read.

    import harness.results as r
    r.runs()                                   # one row per run (default store: HARNESS_DB or runs/harness.db)
    r.runs(spec="distillation", status="completed", where={"model.name": "deit_tiny_patch16_224"})
    r.metrics(spec="distillation", names=["top1"])   # tidy: hash, epoch, name, value (+ run identity)

`runs` columns: hash, spec, variant, label, profile, seed, status, source, epoch, host, started_at,
ended_at, error; then one column per axis coordinate (named by its dotted key); the final metrics
(top1, top5, params, ...); the final text facts as `info.<key>`; and the resolved config flattened
as `config.<dotted.key>`. A `where` filter is an expression over run columns, final metrics, `info.<key>` and
config keys (`"top1 > 80 and distillation.kind in ('hard', 'soft')"`, see harness/store/where.py), the older
`KEY=VALUE` strings, or a mapping of key -> value; it is parsed into a tree and evaluated in the database
(never pasted into SQL), so a query reads only the runs it keeps.
"""

from __future__ import annotations

import json
import math
from operator import itemgetter
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from harness import dotted
from harness.store import RunRecord, RunTable, Store, open_store
from harness.store.where import combine

BASE_COLUMNS = ["hash", "spec", "variant", "label", "profile", "seed", "status", "source", "epoch", "host",
                "started_at", "ended_at", "error"]
IDENTITY = ["hash", "spec", "variant", "label", "profile", "seed"]
Where = str | Mapping[str, Any] | Sequence[str] | Sequence[tuple[str, Any]] | None
# the columns of a RunTable row
_ROW = ["id", "hash", "spec", "variant", "label", "profile", "seed", "status", "source", "epoch", "last_epoch",
        "host", "started_at", "ended_at", "error", "coords"]
# a key a row does not have (None is a value)
_ABSENT: Any = object()


def runs(db: str | Store | None = None, spec: str | None = None, status: str | Sequence[str] | None = None,
         where: Where = None, profile: str | None = None, source: str | None = None) -> pd.DataFrame:
    """One row per run: identity, status, axis coordinates, final metrics, info and flattened config."""
    node = combine(where)
    with _opened(db) as store:
        table = store.run_table(spec=spec, status=status, profile=profile, source=source, where=node)
    return table_frame(table)


def metrics(db: str | Store | None = None, spec: str | None = None, status: str | Sequence[str] | None = None,
            where: Where = None, profile: str | None = None, names: Iterable[str] | None = None) -> pd.DataFrame:
    """Per-epoch metrics, tidy: hash, spec, variant, label, profile, seed, epoch, name, value."""
    name_list = None if names is None else list(names)
    node = combine(where)
    with _opened(db) as store:
        chosen = table_frame(store.run_table(spec=spec, status=status, profile=profile, where=node))
        everything = spec is None and status is None and profile is None and node is None
        rows = store.metrics(None if everything else list(chosen["hash"]), names=name_list)
    tidy = pd.DataFrame(rows, columns=["hash", "epoch", "name", "value"])
    if chosen.empty or tidy.empty:
        return pd.DataFrame(columns=IDENTITY + ["epoch", "name", "value"])
    return tidy.merge(chosen[IDENTITY], on="hash", how="inner")[IDENTITY + ["epoch", "name", "value"]]


def table_frame(table: RunTable) -> pd.DataFrame:
    """A `Store.run_table` -> the wide DataFrame that `runs` returns, equal to `frame` of the same runs.

    Decoded in bulk: every JSON text in one `json.loads`, nested configs flattened key by key over all runs at
    once (not run by run), metrics and info pivoted by pandas."""
    rows = table.rows
    cols = list(zip(*rows)) if rows else [()] * (len(_ROW) + len(table.sections))
    by: dict[str, Sequence[Any]] = dict(zip(_ROW, cols))
    by["profile"] = [p or None for p in by["profile"]]  # NO_PROFILE, as RunRecord.profile has it
    base = pd.DataFrame({c: list(by[c]) for c in BASE_COLUMNS if c != "epoch"}, columns=BASE_COLUMNS)
    epoch = pd.Series(by["epoch"], dtype="Int64")
    last = pd.Series(by["last_epoch"], dtype="Int64")
    base["epoch"] = last.where(epoch.isna() | (last > epoch).fillna(False), epoch).astype("Int64")
    for column in ("started_at", "ended_at"):
        base[column] = pd.to_datetime(base[column], utc=True, format="ISO8601")
    base["seed"] = base["seed"].astype("Int64")
    if not rows:
        return base
    coords = json.loads("[" + ",".join(c or "{}" for c in by["coords"]) + "]")
    taken = set(BASE_COLUMNS)
    blocks = [base]
    for block in (pd.DataFrame.from_records(coords, index=base.index), _objects(table.finals, by["id"], ""),
                  _objects(table.info, by["id"], "info.")):
        block = block[[c for c in block.columns if c not in taken]]
        taken.update(block.columns)
        blocks.append(block)
    columns: dict[str, list[Any]] = {}
    for key, texts in zip(table.sections, cols[len(_ROW):]):
        columns.update(_section_columns(key, texts))
    blocks.append(pd.DataFrame(columns, index=base.index))
    return pd.concat(blocks, axis=1)


def _section_columns(key: str, texts: Sequence[str | None]) -> dict[str, list[Any]]:
    """One top-level config key's JSON text per run -> its flattened `config.`
    columns, each distinct text decoded and flattened once (runs of a store share most of their config)."""
    distinct = {text: i for i, text in enumerate(dict.fromkeys(texts))}
    codes = list(map(distinct.__getitem__, texts))
    present = [t for t in distinct if t is not None]
    decoded = iter(json.loads("[" + ",".join(present) + "]"))
    trees = [{} if text is None else {key: next(decoded)} for text in distinct]
    out = {}
    for name, values in flatten_columns(trees, "config.").items():
        # a list cell becomes a tuple, which hashes: pandas can group by it and compare it
        values = [tuple(v) if type(v) is list else v for v in values]
        out[name] = list(map(values.__getitem__, codes))
    return out


def _objects(objects: Mapping[int, str], ids: Sequence[int], prefix: str) -> pd.DataFrame:
    """Run id -> JSON object (final metrics, info) -> one column per key, one row per id, decoded in one pass
    over the runs that have any (often a few of many: only completed runs have final metrics)."""
    present = [(row, objects[i]) for row, i in enumerate(ids) if i in objects]
    decoded = json.loads("[" + ",".join(text for _, text in present) + "]")
    columns = {}
    for name, values in flatten_columns(decoded, prefix).items():
        # a metric is a float (PostgreSQL writes 71.0 as 71); one stored as NULL (NaN) is NaN, as a record has it
        column: list[Any] = [None if prefix else math.nan] * len(ids)
        for (row, _), value in zip(present, values):
            column[row] = value if prefix else (math.nan if value is None else float(value))
        columns[name] = column
    return pd.DataFrame(columns, index=pd.RangeIndex(len(ids)))


def flatten_columns(trees: Sequence[Mapping[str, Any]], prefix: str = "") -> dict[str, list[Any]]:
    """Nested mappings, one per row -> one list per dotted key (None where a row lacks it), as
    `dotted.flatten` would give row by row; walked one key at a time over every row."""
    out: dict[str, list[Any]] = {}
    _flatten_into(out, list(trees), prefix)
    return out


def _flatten_into(out: dict[str, list[Any]], trees: list[Any], prefix: str) -> None:
    first = trees[0] if trees else None
    if type(first) is dict and all(type(t) is dict and t.keys() == first.keys() for t in trees):
        # the common case: every row has the same keys here; read each key's values with one itemgetter pass
        keys = list(first)
        columns = zip(*map(itemgetter(*keys), trees)) if len(keys) > 1 else [[t[k] for t in trees] for k in keys]
        for key, values in zip(keys, columns):
            kinds = set(map(type, values))
            if dict not in kinds:
                out[f"{prefix}{key}"] = list(values)
            elif kinds == {dict} and all(values):
                _flatten_into(out, list(values), f"{prefix}{key}.")
            else:
                _flatten_key(out, key, list(values), prefix)
        return
    for key in dict.fromkeys(k for tree in trees if type(tree) is dict for k in tree):
        _flatten_key(out, key, [tree.get(key, _ABSENT) if type(tree) is dict else _ABSENT for tree in trees], prefix)


def _flatten_key(out: dict[str, list[Any]], key: str, values: list[Any], prefix: str) -> None:
    """One key's values over every row (`_ABSENT` where a row lacks it) into `out`: a leaf, or recursed into."""
    nested = [type(v) is dict and bool(v) for v in values]
    name = f"{prefix}{key}"
    if not any(nested):
        out[name] = [None if v is _ABSENT else v for v in values]
        return
    if not all(nested):  # this key holds a mapping in some rows and a value in others
        if any(v is not _ABSENT and not nest for v, nest in zip(values, nested)):
            out[name] = [None if v is _ABSENT or nest else v for v, nest in zip(values, nested)]
    _flatten_into(out, [v if nest else _ABSENT for v, nest in zip(values, nested)], name + ".")


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
