"""Filters evaluated in the database (harness/store/where.py), checked against the same filter applied in Python
to the DataFrame of every run; and loads of `harness.results.runs` equal to the record-by-record frame."""

from __future__ import annotations

import math
import re
from typing import Any

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal
from typer.testing import CliRunner

import harness.results as results
from harness.store import NewRun
from harness.store.where import All, Any_, Compare, FilterError, Loose, Not, kind_of, loose_values, parse

MODELS = ["deit_tiny_patch4_32", "deit_small_patch16_224", "tiny_cnn"]
KINDS = ["none", "soft", "hard"]


def _config(i: int) -> dict[str, Any]:
    config: dict[str, Any] = {
        "model": {"name": MODELS[i % 3], "drop_path": 0.1 * (i % 2)},
        "optimizer": {"base_lr": [5e-4, 1e-3, 2.5e-4][i % 3], "betas": [0.9, 0.999]},
        "ema": {"enabled": i % 4 == 0},
        "data": {"name": "digits", "root": None if i % 5 else "/data"},
        "batch_size": 64 * (1 + i % 3),
        "seed": i % 2,
    }
    if i % 7 != 6:  # some runs (imported elsewhere, say) have no distillation section at all
        config["distillation"] = {"kind": KINDS[(i // 3) % 3], "tau": 1.0}
    return config


@pytest.fixture
def filled(store):
    runs = []
    for i in range(21):
        final = {} if i % 6 == 5 else {"top1": 70.0 + i, "params": 5e6 + i}
        runs.append(NewRun(hash=f"{i:064x}", config=_config(i), profile=None if i % 2 else "quick",
                           variant=f"v{i % 4}", label=f"V{i % 4}", coords={}, seed=i % 2,
                           status="completed" if i % 3 else "failed", source="elsewhere", final=final,
                           info={"device": "cuda" if i % 2 else "cpu"}))
    store.import_runs("grid", runs[:14])
    store.import_runs("other", runs[14:])
    return store


def _cell(value: Any) -> Any:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def _lookup(row: pd.Series, key: str) -> Any:
    names = [key] if key.startswith(("config.", "info.")) else [key, f"config.{key}"]
    for name in names:
        if name in row.index:
            return _cell(row[name])
    return None


def _equal(cell: Any, value: Any) -> bool:
    if value is None or cell is None:
        return value is None and cell is None
    return kind_of(cell) == kind_of(value) and cell == value


def _evaluate(node: Any, row: pd.Series) -> bool:
    """The reference: the filter's meaning, in Python, on one row of the DataFrame."""
    if isinstance(node, All):
        return all(_evaluate(p, row) for p in node.parts)
    if isinstance(node, Any_):
        return any(_evaluate(p, row) for p in node.parts)
    if isinstance(node, Not):
        return not _evaluate(node.part, row)
    cell = _lookup(row, node.key)
    if isinstance(cell, (tuple, dict)):
        cell = object()  # a list or mapping equals no literal
    if isinstance(node, Loose):
        return any(_equal(cell, v) for v in loose_values(node.text))
    if node.op == "in":
        return any(_equal(cell, v) for v in node.value)
    if node.op in ("==", "!="):
        return _equal(cell, node.value) == (node.op == "==")
    if cell is None or not isinstance(cell, (int, float, str)) or kind_of(cell) != kind_of(node.value):
        return False
    return bool({"<": cell < node.value, "<=": cell <= node.value, ">": cell > node.value,
                 ">=": cell >= node.value}[node.op])


FILTERS = [
    "top1 > 80",
    "top1 > 80 and model.name == 'deit_tiny_patch4_32' and distillation.kind in ('hard', 'soft')",
    "distillation.kind == 'hard' or top1 > 85 and model.name == 'tiny_cnn'",
    "(distillation.kind == 'hard' or top1 > 85) and model.name == 'tiny_cnn'",
    "not (top1 >= 75)",
    "not top1 >= 75 or params < 5000003",
    "top1 != 80",
    "distillation.kind != 'none'",
    "distillation.kind not in ('none', 'soft')",
    "distillation.kind == null",
    "ema.enabled == true",
    "ema.enabled == false and model.drop_path > 0",
    "data.root == null",
    "data.root != null",
    "config.data.root == '/data'",
    "optimizer.base_lr < 1e-3",
    "optimizer.base_lr == 5e-4",
    "optimizer.base_lr in (0.0005, 0.00025)",
    "batch_size >= 128 and batch_size <= 128.0",
    "seed in (1) and status == 'completed'",
    "variant != 'v1' and profile == 'quick'",
    "profile == null",
    "spec == \"other\"",
    "info.device == 'cuda'",
    "model.name > 'deit_small'",
    "model.name == 5",
    "top1 == 'high'",
    "`model.name` in ('tiny_cnn', 'nope', 3, true, null)",
    "hash == '" + f"{3:064x}" + "'",
    "batch_size=128",
    "ema.enabled=false",
    "data.root=None",
    "model.name=tiny_cnn",
    "optimizer.base_lr=5e-4",
    "top1=80",
]


@pytest.mark.parametrize("text", FILTERS)
def test_filter_in_the_database_equals_the_filter_in_python(filled, text):
    every = results.frame(filled.runs())
    node = parse(text)
    expected = [row["hash"] for _, row in every.iterrows() if _evaluate(node, row)]
    got = results.runs(filled, where=text)
    assert list(got["hash"]) == expected, text
    if expected:
        assert_frame_equal(got, results.frame(filled.runs(hashes=expected)), check_like=True)


def test_filters_are_not_trivial(filled):
    """The cases above choose some runs and leave others (a filter that matched all or none would prove little)."""
    every = results.frame(filled.runs())
    sizes = {text: len(results.runs(filled, where=text)) for text in FILTERS}
    assert sum(0 < n < len(every) for n in sizes.values()) >= len(FILTERS) - 3, sizes


def test_precedence_and_literals_parse_into_the_tree():
    assert parse("a == 1 or b == 2 and not c == 'x'") == Any_((
        Compare("a", "==", 1), All((Compare("b", "==", 2), Not(Compare("c", "==", "x"))))))
    assert parse("(a == 1 or b == 2) and c in (1, -2.5e3, 'q', true, null)") == All((
        Any_((Compare("a", "==", 1), Compare("b", "==", 2))), Compare("c", "in", (1, -2500.0, "q", True, None))))
    assert parse("a.b_c-d != \"it's\"") == Compare("a.b_c-d", "!=", "it's")
    assert parse("model.name=deit_tiny") == Loose("model.name", "deit_tiny")
    assert parse("x not in ('a')") == Not(Compare("x", "in", ("a",)))


@pytest.mark.parametrize("text, message", [
    ("top1 > 0; drop table runs", "unexpected ';' at character 9"),
    ("top1 > 0 or 1=1", "unexpected '=' at character 14"),
    ("top1 > 0 or 1 == 1", "expected a key at '1'"),
    ("model.name == 'x'' or ''='", "unexpected"),
    ("top1 > 0 -- comment", "unexpected"),
    ("top1 >", "expected a value at the end"),
    ("(top1 > 1", "expected ')'"),
    ("top1 > 1)", "unexpected ')'"),
    ("top1", "expected a comparison"),
    ("top1 < true", "'<' compares numbers or text"),
    ("top1 > select", "expected a value"),
    ("", "it is empty"),
    ("x in 'a'", "expected '(' after 'in'"),
    ("seed == 9223372036854775808", "the integer at character 9 is beyond 64 bits"),
    ("seed in (1, -9223372036854775809)", "the integer at character 13 is beyond 64 bits"),
    ("seed == " + "9" * 5000, "beyond 64 bits"),
    ("top1 > 1e999", "beyond the range of a float"),
    ("(" * 65 + "seed == 1" + ")" * 65, "more than 64 nested parentheses or 'not'"),
    ("not " * 400 + "seed == 1", "more than 64 nested parentheses or 'not'"),
    ("not (" * 200 + "seed == 1" + ")" * 200, "more than 64 nested parentheses or 'not'"),
])
def test_malformed_filters_are_one_line_naming_them(text, message):
    with pytest.raises(FilterError, match=re.escape(message)) as caught:
        parse(text)
    assert "\n" not in str(caught.value) and f"'{text}'" in str(caught.value)


def test_filters_at_the_bounds_still_parse():
    assert parse("seed == 9223372036854775807") == Compare("seed", "==", 2 ** 63 - 1)
    assert parse("seed == -0009223372036854775808") == Compare("seed", "==", -(2 ** 63))
    assert parse("(" * 64 + "seed == 1" + ")" * 64) == Compare("seed", "==", 1)
    # depth is nesting, not count: many flat groups side by side are fine
    assert len(parse(" or ".join(["(not seed == 1)"] * 200)).parts) == 200


def test_unbounded_filters_are_one_line_and_exit_2_in_the_cli(filled, store_url):
    from harness.cli import app

    for bad in ("seed == 99999999999999999999999", "(" * 400 + "seed == 1" + ")" * 400, "not " * 400 + "seed == 1"):
        result = CliRunner().invoke(app, ["results", "--db", store_url, "--where", bad])
        assert result.exit_code == 2 and "malformed filter" in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1


def test_injection_attempts_change_nothing(filled):
    before = results.runs(filled)
    with pytest.raises(FilterError):
        results.runs(filled, where="top1 > 0; drop table runs")
    # quoted SQL is a value like any other: bound, compared, matching nothing
    assert results.runs(filled, where="model.name == 'x\\' or 1=1; drop table runs; --'").empty
    assert results.runs(filled, where="model.name == \"x' or '1'='1\"").empty
    with pytest.raises(FilterError, match="unknown key"):
        results.runs(filled, where="`model') or 1=1; drop table runs; --` == 1")
    assert results.runs(filled, where="model.name=x' or '1'='1").empty
    assert_frame_equal(results.runs(filled), before)


def test_unknown_keys_are_named_with_a_hint(filled):
    with pytest.raises(FilterError, match=r"unknown key 'top2'.*did you mean: top1"):
        results.runs(filled, where="top2 > 1")
    with pytest.raises(FilterError, match=r"unknown key 'model.nme'.*did you mean: model.name"):
        results.runs(filled, where="model.nme == 'x' or top1 > 0")
    with pytest.raises(FilterError, match="unknown key 'info.gpu'"):
        results.runs(filled, where="info.gpu == 'a100'")


def test_the_cli_filters_and_reports_a_bad_filter_in_one_line(filled, store_url):
    from harness.cli import app

    runner = CliRunner()
    ok = runner.invoke(app, ["results", "--db", store_url, "--format", "csv", "--columns", "hash",
                             "--where", "top1 > 85", "--where", "model.name == 'tiny_cnn'"])
    assert ok.exit_code == 0, ok.output
    expected = results.runs(filled, where="top1 > 85 and model.name == 'tiny_cnn'")["hash"]
    assert ok.output.split()[1:] == list(expected) and len(expected) > 0
    for bad, named in (("top1 >> 3", "top1 >> 3"), ("top3 > 1", "unknown key 'top3'")):
        result = runner.invoke(app, ["results", "--db", store_url, "--where", bad])
        assert result.exit_code == 2 and named in result.output
        assert len(result.output.strip().splitlines()) == 1, result.output


def test_loads_equal_the_record_by_record_frame(filled, planned):
    """The bulk load (one JSON decode per distinct config part, metrics pivoted) equals the frame built from
    RunRecords one by one, column for column, for every filter of the store's own."""
    filled.register_experiment("planned", "", "")
    filled.register_runs("planned", planned(5, spec="planned"))
    for kwargs in ({}, {"spec": "grid"}, {"spec": "planned"}, {"status": "completed"}, {"profile": "quick"},
                   {"source": "elsewhere"}):
        new = results.runs(filled, **kwargs)
        old = results.frame(filled.runs(**kwargs))
        assert len(new) > 0
        assert_frame_equal(new, old, check_like=True)
        assert list(new.columns[:13]) == list(old.columns[:13])


def test_a_store_with_no_finished_run_knows_the_metrics_and_every_printed_column(store, planned, store_url):
    """The README's `--where "top1 > 80"` before anything finished keeps no run (not 'unknown key'), and each
    column `harness results` prints is a key: `epoch` (0-based, the later of heartbeat and metrics) and the times."""
    from harness.cli import app
    from tests.runstate import TEST_OWNER, drive

    runs = planned(3)
    store.register_experiment("ablation", "", None)
    store.register_runs("ablation", runs)
    drive(store, runs[0].hash, "running")
    store.log_epoch(runs[0].hash, 0, {"top1": 40.0}, token=TEST_OWNER.token)
    store.log_epoch(runs[0].hash, 1, {"top1": 50.0}, token=TEST_OWNER.token)
    for text in ("top1 > 80", "ema_top1 > 1", "throughput_paper_img_s > 0", "params > 0"):
        assert results.runs(store, where=text).empty, text
    assert list(results.runs(store, where="top1 < 80 or top1 == null")["hash"]) == [r.hash for r in runs]
    every = results.runs(store)
    assert list(every["epoch"].fillna(-1)) == [1, -1, -1]
    assert list(results.runs(store, where="epoch == 1")["hash"]) == [runs[0].hash]
    assert list(results.runs(store, where="epoch >= 0")["hash"]) == [runs[0].hash]
    assert len(results.runs(store, where="epoch == null")) == 2
    assert list(results.runs(store, where="started_at > '2000-01-01'")["hash"]) == [runs[0].hash]
    assert results.runs(store, where="started_at > '2999'").empty
    assert len(results.runs(store, where="ended_at == null")) == 3
    result = CliRunner().invoke(app, ["results", "--db", store_url, "--where", "top1 > 80"])
    assert result.exit_code == 0 and result.output == "no runs\n", result.output
    printed = CliRunner().invoke(app, ["results", "--db", store_url]).output.splitlines()[0].split()
    for column in printed:
        assert CliRunner().invoke(app, ["results", "--db", store_url, "--where", f"{column} == 0"]).exit_code == 0, column
