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


# an export in a process of its own, for the tests of exports together and of one killed: argv is the folder of
# the barrier (or "-"), this export's name, the seconds it waits there for the other, and the CLI's arguments.
# Each export waits, once it has read what MLflow holds, until the other has read too (or the seconds pass): without
# a lock both find every run missing; with one, the second reads only after the first is done.
# HARNESS_TEST_KILL_AT=N kills the export (SIGKILL) right after its Nth write to MLflow.
EXPORTER = """
import os, signal, sys, time
from pathlib import Path
import harness.export.mlflow as m
from mlflow.tracking import MlflowClient

barrier, me, wait = sys.argv[1], sys.argv[2], float(sys.argv[3])
original = m._runs_by_hash

def waiting(client, experiment_id):
    found = original(client, experiment_id)
    if barrier != "-":
        (Path(barrier) / me).touch()
        deadline = time.monotonic() + wait
        while len(list(Path(barrier).iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    return found

m._runs_by_hash = waiting
kill_at, writes = int(os.environ.get("HARNESS_TEST_KILL_AT", "0")), [0]
log_batch = MlflowClient.log_batch

def counted(self, *args, **kwargs):
    log_batch(self, *args, **kwargs)
    writes[0] += 1
    if writes[0] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)

MlflowClient.log_batch = counted
from harness.cli import app
app(sys.argv[4:], prog_name="harness")
"""


def _exporter(tmp_path, name: str, barrier: str, tracking: str, db: str, wait: float = 5.0, kill_at: int = 0):
    import subprocess
    import sys

    from tests.tiny_spec import REPO, harness_env

    return subprocess.Popen([sys.executable, "-c", EXPORTER, barrier, name, str(wait), "export", "mlflow",
                             "--tracking-uri", tracking, "--db", db],
                            cwd=tmp_path, env=harness_env(HARNESS_TEST_KILL_AT=str(kill_at),
                                                          PYTHONPATH=str(REPO)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _exported(tracking: str) -> tuple[dict[str, int], list[tuple]]:
    """MLflow runs per harness hash, and every (run, metric, epoch) logged more than once."""
    with sqlite3.connect(tracking.removeprefix("sqlite:///")) as conn:
        per_hash = dict(conn.execute(f"SELECT value, count(*) FROM tags WHERE key = '{HASH_TAG}' GROUP BY value"))
        twice = conn.execute("SELECT run_uuid, key, step, count(*) FROM metrics GROUP BY run_uuid, key, step "
                             "HAVING count(*) > 1").fetchall()
    return per_hash, twice


def _all_epochs_once(tracking: str, store, runs) -> None:
    per_hash, twice = _exported(tracking)
    assert per_hash == {r.hash: 1 for r in runs} and twice == []
    client = mlflow.tracking.MlflowClient(tracking)
    for run in client.search_runs([client.get_experiment_by_name("ablation").experiment_id]):
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "top1")]
        assert sorted(steps) == [0, 1, 2], (run.data.tags[HASH_TAG], steps)


@pytest.mark.slow  # starts processes
def test_two_exports_at_once_leave_one_mlflow_run_per_run_and_every_epoch_once(filled, tracking, sqlite_url, tmp_path):
    store, runs = filled
    client = mlflow.tracking.MlflowClient(tracking)
    client.create_experiment("ablation")  # the race is over runs: both exports find the experiment there
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    exports = [_exporter(tmp_path, name, str(barrier), tracking, sqlite_url) for name in ("a", "b")]
    outputs = [p.communicate(timeout=300)[0] for p in exports]
    assert [p.returncode for p in exports] == [0, 0], outputs
    assert sorted(o.count("6 runs created") for o in outputs) == [0, 1], outputs
    _all_epochs_once(tracking, store, runs)


@pytest.mark.slow  # starts processes
def test_exports_into_a_new_tracking_store_at_once_both_succeed(filled, tracking, sqlite_url, tmp_path):
    """Two exports creating a new tracking store's tables together: MLflow's migrations raced ("duplicate column
    name: step"); the lock makes the second wait for the first."""
    store, runs = filled
    exports = [_exporter(tmp_path, name, "-", tracking, sqlite_url) for name in ("a", "b")]
    outputs = [p.communicate(timeout=300)[0] for p in exports]
    assert [p.returncode for p in exports] == [0, 0], outputs
    _all_epochs_once(tracking, store, runs)


@pytest.mark.slow  # starts processes
def test_an_export_killed_midway_then_run_again_logs_every_epoch_once(filled, tracking, sqlite_url, tmp_path):
    from typer.testing import CliRunner

    from harness.cli import app

    store, runs = filled
    killed = _exporter(tmp_path, "killed", "-", tracking, sqlite_url, kill_at=3)
    killed.communicate(timeout=300)
    assert killed.returncode == -9  # SIGKILL, after its third write: some runs exported, some not
    per_hash, _ = _exported(tracking)
    assert 0 < len(per_hash) < len(runs)

    again = CliRunner().invoke(app, ["export", "mlflow", "--tracking-uri", tracking, "--db", sqlite_url])

    assert again.exit_code == 0, again.output
    _all_epochs_once(tracking, store, runs)


def test_mlflows_own_errors_are_named_as_mlflows(filled, tracking, sqlite_url, monkeypatch):
    from sqlalchemy.exc import OperationalError
    from typer.testing import CliRunner

    from harness.cli import app

    def failing(*args, **kwargs):
        raise OperationalError("ALTER TABLE metrics ADD COLUMN step", {}, Exception("duplicate column name: step"))

    monkeypatch.setattr(mlflow.tracking.MlflowClient, "create_run", failing)
    result = CliRunner().invoke(app, ["export", "mlflow", "--tracking-uri", tracking, "--db", sqlite_url])
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert errors == [f"error: MLflow's tracking store at {tracking} answered with an error: "
                      "duplicate column name: step"], result.output


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
