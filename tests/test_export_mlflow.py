"""`harness export mlflow`: the store's runs in a real MLflow tracking store (SQLite backend), read back."""

from __future__ import annotations

import math
import sqlite3

import pytest

mlflow = pytest.importorskip("mlflow")

from harness.export.mlflow import EPOCH_TAG, HASH_TAG, export, run_name, split_params  # noqa: E402
from tests.runstate import drive  # noqa: E402


@pytest.fixture
def tracking(tmp_path, monkeypatch):
    # MLflow puts a new experiment's artifacts beside the working directory: keep them in the test's folder
    monkeypatch.chdir(tmp_path)
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture
def filled(sqlite_store, planned):
    store = sqlite_store
    runs = planned(3, seeds=2)
    store.register_experiment("ablation", "", "")
    store.register_runs("ablation", runs)
    for i, run in enumerate(runs):
        for epoch in range(3):
            store.log_epoch(run.hash, epoch, {"top1": 10.0 * epoch + i, "train_loss": 2.0 / (epoch + 1),
                                              "lr": math.nan if epoch == 2 and i == 0 else 1e-3})
    drive(store, runs[0].hash, "completed", provenance={"git_commit": "abc123", "host": "node7", "torch": "2.4"})
    store.log_final(runs[0].hash, {"top1": 20.0, "throughput": 1234.5, "params": 5e6, "flops": 1.2e9},
                    {"device": "NVIDIA H100"})
    drive(store, runs[1].hash, "running")
    return store, runs


def _mlflow_rows(uri: str) -> dict[str, int]:
    """Every row of MLflow's tables that an export writes: a second export must change none of them."""
    with sqlite3.connect(uri.removeprefix("sqlite:///")) as conn:
        return {table: conn.execute(f"SELECT count(*), group_concat(quote({col}))  FROM {table}").fetchone()
                for table, col in (("runs", "status || coalesce(end_time, '')"), ("metrics", "value"),
                                   ("latest_metrics", "value"), ("params", "value"), ("tags", "value"),
                                   ("experiments", "name"))}


def test_every_run_its_params_and_histories_reach_mlflow(filled, tracking):
    store, runs = filled
    summary = export(store, tracking)
    assert summary.runs_created == 6 and summary.epochs_logged == 18

    mlflow.set_tracking_uri(tracking)
    frame = mlflow.search_runs(experiment_names=["ablation"])
    assert len(frame) == 6
    assert sorted(frame[f"tags.{HASH_TAG}"]) == sorted(r.hash for r in runs)
    client = mlflow.MlflowClient(tracking)
    for record in store.runs(spec="ablation"):
        row = frame[frame[f"tags.{HASH_TAG}"] == record.hash].iloc[0]
        assert row["tags.mlflow.runName"] == run_name(record)
        assert row["tags.harness.variant"] == record.variant and row["tags.harness.state"] == record.status
        assert row["tags.harness.spec"] == "ablation" and row["tags.harness.profile"] == "quick"
        run = client.get_run(row["run_id"])
        assert run.data.params == split_params(record.config)[0]
        assert run.data.params["model.name"] == record.config["model"]["name"]
        stored = [(e, n, v) for h, e, n, v in store.metrics([record.hash])]
        exported = sorted((m.step, name, m.value) for name in ("lr", "top1", "train_loss")
                          for m in client.get_metric_history(row["run_id"], name))
        assert len(exported) == len(stored) == 9
        for (e1, n1, v1), (e2, n2, v2) in zip(sorted(stored), exported):
            assert (e1, n1) == (e2, n2) and (v1 == v2 or math.isnan(v1) and math.isnan(v2))
    done = client.get_run(frame[frame[f"tags.{HASH_TAG}"] == runs[0].hash].iloc[0]["run_id"])
    assert done.info.status == "FINISHED" and done.data.tags["harness.device"] == "NVIDIA H100"
    assert done.data.metrics["final.throughput"] == 1234.5 and done.data.metrics["final.flops"] == 1.2e9
    assert done.data.tags["harness.provenance.git_commit"] == "abc123" == done.data.tags["mlflow.source.git.commit"]
    assert done.data.tags["harness.provenance.host"] == "node7"
    assert client.get_run(frame[frame[f"tags.{HASH_TAG}"] == runs[1].hash].iloc[0]["run_id"]).info.status \
        == "RUNNING"


def test_a_second_export_changes_nothing_and_a_new_epoch_adds_only_itself(filled, tracking):
    store, runs = filled
    export(store, tracking)
    before = _mlflow_rows(tracking)
    again = export(store, tracking)
    assert _mlflow_rows(tracking) == before
    assert again.runs_created == again.runs_updated == again.epochs_logged == 0 and again.runs_unchanged == 6

    store.log_epoch(runs[1].hash, 3, {"top1": 99.0, "train_loss": 0.1, "lr": 1e-4})
    third = export(store, tracking)
    assert third.runs_updated == 1 and third.epochs_logged == 1 and third.values_logged == 3
    client = mlflow.MlflowClient(tracking)
    run = client.search_runs([client.get_experiment_by_name("ablation").experiment_id],
                             filter_string=f"tags.`{HASH_TAG}` = '{runs[1].hash}'")[0]
    history = client.get_metric_history(run.info.run_id, "top1")
    assert [m.step for m in history] == [0, 1, 2, 3] and history[-1].value == 99.0
    assert run.data.tags[EPOCH_TAG] == "3"
    after = _mlflow_rows(tracking)
    assert after["metrics"][0] == before["metrics"][0] + 3 and after["runs"][0] == before["runs"][0]


def test_one_spec_exports_only_its_runs(filled, tracking, planned):
    store, runs = filled
    other = planned(2, spec="other", start=10)
    store.register_experiment("other", "", "")
    store.register_runs("other", other)
    export(store, tracking, "other")
    mlflow.set_tracking_uri(tracking)
    assert len(mlflow.search_runs(experiment_names=["other"])) == 2
    assert mlflow.MlflowClient(tracking).get_experiment_by_name("ablation") is None
    with pytest.raises(LookupError, match="no spec 'nosuch'"):
        export(store, tracking, "nosuch")


def test_a_param_mlflow_cannot_hold_goes_whole_to_an_artifact():
    params, long = split_params({"a": {"b": 1}, "note": "x" * 7000, "k" * 300: True})
    assert params == {"a.b": "1"} and long == {"note": "x" * 7000, "k" * 300: "true"}


def test_the_command_exports_and_says_what_it_wrote(filled, tracking, sqlite_url):
    from typer.testing import CliRunner

    from harness.cli import app

    result = CliRunner().invoke(app, ["export", "mlflow", "ablation", "--tracking-uri", tracking, "--db", sqlite_url])
    assert result.exit_code == 0, result.output
    assert "1 experiment: 6 runs created" in result.output
    again = CliRunner().invoke(app, ["export", "mlflow", "--tracking-uri", tracking, "--db", sqlite_url])
    assert "0 runs created, 0 updated, 6 already up to date; 0 epochs" in again.output


def test_without_mlflow_the_command_says_how_to_install_it(filled, sqlite_url, monkeypatch):
    from typer.testing import CliRunner

    from harness.cli import app

    for name in ("mlflow", "mlflow.tracking"):
        monkeypatch.setitem(__import__("sys").modules, name, None)  # what `import mlflow` meets when it is absent
    result = CliRunner().invoke(app, ["export", "mlflow", "--tracking-uri", "sqlite:///x.db", "--db", sqlite_url])
    assert result.exit_code == 2
    assert result.output.strip() == "error: the MLflow export needs mlflow: pip install 'deit-harness[mlflow]'"


def test_exported_epochs_carry_the_time_each_epoch_ended(sqlite_store, planned, tracking):
    from datetime import datetime, timedelta, timezone

    store = sqlite_store
    run = planned(1)[0]
    store.register_experiment("ablation", "", "")
    store.register_runs("ablation", [run])
    t0 = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
    for epoch in range(3):
        store.log_epoch(run.hash, epoch, {"top1": 10.0 * epoch}, ended_at=t0 + timedelta(minutes=7 * epoch))
    assert store.epoch_ends([run.hash]) == {run.hash: {e: t0 + timedelta(minutes=7 * e) for e in range(3)}}
    export(store, tracking)
    client = mlflow.MlflowClient(tracking)
    found = client.search_runs([client.get_experiment_by_name("ablation").experiment_id])[0]
    history = client.get_metric_history(found.info.run_id, "top1")
    assert [(m.step, m.timestamp) for m in history] == [
        (e, int((t0 + timedelta(minutes=7 * e)).timestamp() * 1000)) for e in range(3)]
