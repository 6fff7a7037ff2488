"""harness.results: the store as pandas DataFrames."""

from __future__ import annotations

import pandas as pd
import pytest

import harness.results as results
from harness.store import StoreError
from tests.runstate import drive


@pytest.fixture
def filled(sqlite_store, planned):
    store = sqlite_store
    runs = planned(4)
    store.register_experiment("ablation", "", "")
    store.register_runs("ablation", runs)
    for i, run in enumerate(runs):
        store.log_epoch(run.hash, 0, {"top1": 10.0 + i, "train_loss": 2.0})
        store.log_epoch(run.hash, 1, {"top1": 20.0 + i, "train_loss": 1.0})
    store.log_final(runs[0].hash, {"top1": 20.0, "params": 1e5}, {"device": "cpu"})
    drive(store, runs[0].hash, "completed")
    return store, runs


def test_runs_is_one_wide_row_per_run(filled):
    store, runs = filled
    df = results.runs(store)
    assert list(df["hash"]) == [r.hash for r in runs]
    assert list(df.columns[:7]) == ["hash", "spec", "variant", "label", "profile", "seed", "status"]
    assert list(df["model.name"]) == ["tiny_vit", "tiny_cnn"] * 2
    assert list(df["config.batch_size"]) == [64, 65, 66, 67]
    assert df.loc[0, "config.data.name"] == "digits" and df.loc[0, "config.optimizer.base_lr"] == 5e-4
    assert df.loc[0, "top1"] == 20.0 and pd.isna(df.loc[1, "top1"]) and df.loc[0, "info.device"] == "cpu"
    assert list(df["epoch"]) == [1, 1, 1, 1] and str(df["seed"].dtype) == "Int64"
    assert str(df["started_at"].dtype).startswith("datetime64")


def test_configs_of_different_shapes_fill_aligned_columns(sqlite_store):
    from harness.store import NewRun

    shapes = {"a": {"model": {"name": "x"}, "betas": [0.9, 0.999]}, "b": {"schedule": {"epochs": 3}, "augment": {}}}
    sqlite_store.import_runs("shapes", [
        NewRun(hash=name * 64, config=config, profile=None, variant=name, label=name, coords={}, seed=0,
               status="completed", source="elsewhere", final={"top1": 1.0}) for name, config in shapes.items()])
    df = results.runs(sqlite_store).set_index("variant")
    assert df.loc["a", "config.model.name"] == "x" and pd.isna(df.loc["b", "config.model.name"])
    assert pd.isna(df.loc["a", "config.schedule.epochs"]) and df.loc["b", "config.schedule.epochs"] == 3
    # a list is a tuple (hashable: pandas groups by it); an empty mapping is a value of its own
    assert df.loc["a", "config.betas"] == (0.9, 0.999) and df.loc["b", "config.augment"] == {}


def test_runs_filters(filled):
    store, runs = filled
    url = store.url.render_as_string(hide_password=False)
    assert list(results.runs(url, status="completed")["hash"]) == [runs[0].hash]
    assert len(results.runs(url, spec="ablation")) == 4 and results.runs(url, spec="nope").empty
    assert len(results.runs(url, where={"model.name": "tiny_cnn"})) == 2
    assert list(results.runs(url, where=["batch_size=65"])["variant"]) == ["v1"]
    assert list(results.runs(url, where=["config.batch_size=65", "model.name=tiny_cnn"])["variant"]) == ["v1"]
    assert len(results.runs(url, where=["ema.enabled=false"])) == 4
    assert len(results.runs(url, where=["optimizer.base_lr=0.0005"])) == 4
    assert len(results.runs(url, where=["optimizer.base_lr=5e-4"])) == 4
    assert list(results.runs(url, where=["variant=v2"])["variant"]) == ["v2"]
    assert len(results.runs(url, where=["data.root=None"])) == 4
    with pytest.raises(ValueError, match="KEY=VALUE"):
        results.runs(url, where=["model.name"])
    with pytest.raises(ValueError, match="did you mean"):
        results.runs(url, where=["model.nme=x"])


def test_metrics_is_tidy(filled):
    store, runs = filled
    tidy = results.metrics(store)
    assert list(tidy.columns) == ["hash", "spec", "variant", "label", "profile", "seed", "epoch", "name", "value"]
    assert len(tidy) == 16
    top1 = results.metrics(store, names=["top1"], where={"variant": "v3"})
    assert list(top1["value"]) == [13.0, 21.0 + 2] and set(top1["hash"]) == {runs[3].hash}
    assert results.metrics(store, status="completed")["hash"].unique().tolist() == [runs[0].hash]


def test_empty_store_has_the_columns(sqlite_store):
    df = results.runs(sqlite_store)
    assert df.empty and {"hash", "spec", "variant", "status"} <= set(df.columns)
    assert results.metrics(sqlite_store).empty


def test_missing_store_is_an_error(tmp_path):
    with pytest.raises(StoreError, match="no results store"):
        results.runs(f"sqlite:///{tmp_path / 'missing.db'}")
