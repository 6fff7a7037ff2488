"""Live tracking (`harness.export.live`): each epoch copied to its MLflow run as it ends, never slowing or failing
the run. Against an MLflow SQLite store directly, and (slow) a real `mlflow server` that a test starts, stops
and starts again while a run trains."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

mlflow = pytest.importorskip("mlflow")

from harness.export.live import LiveTracker, tracking_uri  # noqa: E402
from harness.export.mlflow import EPOCH_TAG, HASH_TAG, export  # noqa: E402
from tests.runstate import drive  # noqa: E402
from tests.test_spec import write  # noqa: E402
from tests.tiny_spec import harness_env, tiny_spec  # noqa: E402

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def tracking(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MLflow puts artifacts beside the working directory
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture
def one_run(sqlite_store, planned):
    run = planned(1)[0]
    sqlite_store.register_experiment("ablation", "", "")
    sqlite_store.register_runs("ablation", [run])
    drive(sqlite_store, run.hash, "running")
    return sqlite_store, run


def history(uri: str, run_hash: str, name: str = "top1"):  # type: ignore[no-untyped-def]
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("ablation")
    if experiment is None:
        return None, []
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{HASH_TAG}` = '{run_hash}'")
    if not runs:
        return None, []
    return runs, client.get_metric_history(runs[0].info.run_id, name)


def test_the_uri_comes_from_the_option_else_the_environment_else_the_spec(monkeypatch):
    monkeypatch.delenv("HARNESS_MLFLOW_URI", raising=False)
    assert tracking_uri(None, {}) is None
    assert tracking_uri(None, {"mlflow": "http://spec"}) == "http://spec"
    monkeypatch.setenv("HARNESS_MLFLOW_URI", "http://env")
    assert tracking_uri(None, {"mlflow": "http://spec"}) == "http://env"
    assert tracking_uri("http://option", {"mlflow": "http://spec"}) == "http://option"


def test_epochs_reach_the_runs_mlflow_run_with_their_times_and_an_export_adds_nothing(one_run, tracking):
    store, run = one_run
    tracker = LiveTracker(tracking, store.get_run(run.hash)).start()
    for epoch in range(3):
        ended = T0 + timedelta(minutes=5 * epoch)
        store.log_epoch(run.hash, epoch, {"top1": 10.0 + epoch}, ended_at=ended)
        tracker.log_epoch(epoch, {"top1": 10.0 + epoch}, ended)
    assert tracker.close(wait_s=60)
    runs, got = history(tracking, run.hash)
    assert len(runs) == 1 and runs[0].data.tags[EPOCH_TAG] == "2"
    assert [(m.step, m.value, m.timestamp) for m in got] == [
        (e, 10.0 + e, int((T0 + timedelta(minutes=5 * e)).timestamp() * 1000)) for e in range(3)]
    # a resumed job (a new tracker) continues the same MLflow run; the export then has nothing to add
    again = LiveTracker(tracking, store.get_run(run.hash)).start()
    store.log_epoch(run.hash, 3, {"top1": 13.0}, ended_at=T0 + timedelta(minutes=15))
    again.log_epoch(3, {"top1": 13.0}, T0 + timedelta(minutes=15))
    assert again.close(wait_s=60)
    summary = export(store, tracking)
    assert summary.runs_created == 0 and summary.epochs_logged == 0
    runs, got = history(tracking, run.hash)
    assert len(runs) == 1 and [m.step for m in got] == [0, 1, 2, 3]


def test_a_server_that_does_not_answer_never_holds_the_run_and_the_export_fills_in(one_run, tracking):
    store, run = one_run
    with socket.socket() as silent:  # takes connections and never answers: a server hung or far too slow
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        tracker = LiveTracker(f"http://127.0.0.1:{silent.getsockname()[1]}", store.get_run(run.hash)).start()
        for epoch in range(3):  # each call only queues: were one to wait for the server, the test would hang here
            tracker.log_epoch(epoch, {"top1": float(epoch)}, T0 + timedelta(minutes=epoch))
            store.log_epoch(run.hash, epoch, {"top1": float(epoch)}, ended_at=T0 + timedelta(minutes=epoch))
        assert not tracker.close(wait_s=0.5) and len(tracker.queue) == 3
    export(store, tracking)
    _, got = history(tracking, run.hash)
    assert [(m.step, m.timestamp) for m in got] == [(e, int((T0 + timedelta(minutes=e)).timestamp() * 1000))
                                                    for e in range(3)]


# ---------------------------------------------------------------------------------------------------------------
# a real tracking server and a real training run


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(folder: Path, port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}", "--default-artifact-root", str(folder / "art")],
        cwd=folder, stdout=open(folder / f"server-{port}-{time.time():.0f}.log", "w"), stderr=subprocess.STDOUT,
        start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                pass
            mlflow.MlflowClient(f"http://127.0.0.1:{port}").search_experiments()
            return server
        except Exception:  # noqa: BLE001 - not up yet
            if server.poll() is not None:
                raise RuntimeError(f"mlflow server exited {server.returncode}")
            time.sleep(1)
    stop_server(server)
    raise RuntimeError("mlflow server did not start in 240 s")


def stop_server(server: subprocess.Popen) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)  # the server and its workers, a group of its own
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


EPOCHS = 8
SPEC = tiny_spec("ablation", epochs=EPOCHS).replace("train_subset: 64", "train_subset: 1024") + """
variants:
  only: {}
"""


def start_run(tmp_path: Path, uri: str, db: str) -> subprocess.Popen:
    spec = write(tmp_path, SPEC)
    return subprocess.Popen([sys.executable, "-m", "harness", "run", str(spec), "--executor", "local", "--threads",
                             "1", "--db", db, "--output", str(tmp_path / "out"), "--mlflow", uri],
                            cwd=tmp_path, env=harness_env(PYTHONPATH=str(Path(__file__).resolve().parent.parent)),
                            stdout=open(tmp_path / "run.log", "w"), stderr=subprocess.STDOUT)


def the_run(store):  # type: ignore[no-untyped-def]
    runs = store.runs()
    return runs[0] if runs else None


@pytest.mark.slow  # a tracking server (a minute to start on a busy machine) and an 8-epoch run
def test_epochs_show_in_mlflow_while_the_run_trains(tmp_path, sqlite_store, sqlite_url):
    port = free_port()
    server = start_server(tmp_path, port)
    uri = f"http://127.0.0.1:{port}"
    try:
        job = start_run(tmp_path, uri, sqlite_url)
        seen_while_running = []
        while job.poll() is None:
            record = the_run(sqlite_store)
            if record is not None and record.status == "running":
                _, got = history(uri, record.hash)
                if got and len(got) < EPOCHS and the_run(sqlite_store).status == "running":
                    seen_while_running.append(len(got))
            time.sleep(0.5)
        assert job.returncode == 0, (tmp_path / "run.log").read_text()[-3000:]
        assert seen_while_running, "no epoch reached MLflow while the run trained"
        record = the_run(sqlite_store)
        runs, got = history(uri, record.hash)
        assert len(runs) == 1 and [m.step for m in got] == list(range(EPOCHS))
        stamps = [m.timestamp for m in got]
        assert stamps == sorted(stamps) and len(set(stamps)) == EPOCHS
        ends = sqlite_store.epoch_ends([record.hash])[record.hash]
        assert stamps == [int(ends[e].timestamp() * 1000) for e in range(EPOCHS)]
        assert runs[0].info.status == "FINISHED"
    finally:
        stop_server(server)


@pytest.mark.slow  # a tracking server started twice and an 8-epoch run
def test_a_server_stopped_mid_run_neither_stops_the_run_nor_loses_an_epoch(tmp_path, sqlite_store, sqlite_url):
    port = free_port()
    server = start_server(tmp_path, port)
    uri = f"http://127.0.0.1:{port}"
    try:
        job = start_run(tmp_path, uri, sqlite_url)
        while job.poll() is None:
            record = the_run(sqlite_store)
            if record is not None and history(uri, record.hash)[1]:
                break
            time.sleep(0.5)
        stop_server(server)  # mid-run: MLflow holds some epochs, not all
        assert job.wait(600) == 0, (tmp_path / "run.log").read_text()[-3000:]
        record = the_run(sqlite_store)
        assert record.status == "completed" and record.epoch == EPOCHS - 1
        server = start_server(tmp_path, port)
        export(sqlite_store, uri)
        for name in ("top1", "train_loss"):
            _, got = history(uri, record.hash, name)
            assert [m.step for m in got] == list(range(EPOCHS)), name  # every epoch, once
            stamps = [m.timestamp for m in got]
            assert stamps == sorted(stamps) and len(set(stamps)) == EPOCHS
    finally:
        stop_server(server)
