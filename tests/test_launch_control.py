"""Watching and steering: status, dead-job detection, logs, cancel and retry through the store."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest

from harness.launch.control import cancel, failed_runs, find_runs, format_statuses, log_text, reap_dead, statuses


def registered(store, planned, n=3):
    runs = planned(n)
    store.register_experiment("ablation", "name: ablation\n", "ablation.yaml")
    store.register_runs("ablation", runs)
    return runs


def test_status_rows_show_state_epoch_top1_job_and_elapsed(sqlite_store, planned):
    runs = registered(sqlite_store, planned)
    sqlite_store.set_status(runs[0].hash, "submitted", job_id="local:123")
    sqlite_store.mark_started(runs[0].hash, "node1", {})
    sqlite_store.log_epoch(runs[0].hash, 0, {"top1": 41.5, "train_loss": 2.0})
    rows = {r.hash: r for r in statuses(sqlite_store, "ablation")}
    row = rows[runs[0].hash]
    assert (row.status, row.epoch, row.top1, row.job_id) == ("running", 0, 41.5, "local:123")
    assert row.elapsed_s is not None and row.elapsed_s >= 0
    text = format_statuses(list(rows.values()))
    assert runs[0].hash[:10] in text and "41.5" in text and "1/300" in text
    assert rows[runs[1].hash].status == "pending"


def test_a_silent_running_job_is_marked_failed(sqlite_store, planned):
    runs = registered(sqlite_store, planned)
    sqlite_store.set_status(runs[0].hash, "submitted", job_id="slurm:77")
    sqlite_store.mark_started(runs[0].hash, "node1", {})
    sqlite_store.set_status(runs[1].hash, "submitted", job_id="slurm:78")  # queued, never started
    later = datetime.now(timezone.utc) + timedelta(minutes=30)
    assert reap_dead(sqlite_store, later) == [runs[0].hash]
    record = sqlite_store.get_run(runs[0].hash)
    assert record.status == "failed" and "heartbeat" in record.error
    assert sqlite_store.get_run(runs[1].hash).status == "submitted"
    # a run that keeps beating is alive
    sqlite_store.mark_started(runs[2].hash, "node1", {})
    assert reap_dead(sqlite_store) == []


# like submitit's local controller started from a script: it ignores SIGINT, and so does the task it starts
CONTROLLER = """
import signal, subprocess, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
task = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                         "signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(120)"],
                        stdout=subprocess.PIPE, text=True)
print(task.pid, flush=True)
task.stdout.readline()
print('ready', flush=True)
task.wait()
"""


def test_cancel_kills_a_local_job_and_its_task_and_marks_the_run(sqlite_store, planned):
    runs = registered(sqlite_store, planned)
    controller = subprocess.Popen([sys.executable, "-c", CONTROLLER], stdout=subprocess.PIPE, text=True)
    try:
        task_pid = int(controller.stdout.readline())
        assert controller.stdout.readline().strip() == "ready"
        sqlite_store.set_status(runs[0].hash, "running", job_id=f"local:{controller.pid}")
        sqlite_store.set_status(runs[1].hash, "completed")
        assert cancel(sqlite_store, "ablation") == [runs[0].hash, runs[2].hash]
        assert controller.wait(timeout=15) != 0
        deadline = time.monotonic() + 5
        while os.path.exists(f"/proc/{task_pid}") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not os.path.exists(f"/proc/{task_pid}") or open(f"/proc/{task_pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
    finally:
        if controller.poll() is None:
            controller.kill()
    assert sqlite_store.get_run(runs[0].hash).status == "cancelled"
    assert sqlite_store.get_run(runs[1].hash).status == "completed"


def test_runs_are_found_by_spec_or_hash_prefix(sqlite_store, planned):
    runs = registered(sqlite_store, planned)
    assert [r.hash for r in find_runs(sqlite_store, runs[1].hash[:8])] == [runs[1].hash]
    assert len(find_runs(sqlite_store, "ablation")) == 3
    with pytest.raises(LookupError, match="no spec or run matches"):
        find_runs(sqlite_store, "zzzzzz")


def test_logs_print_both_streams(sqlite_store, planned, tmp_path):
    runs = registered(sqlite_store, planned)
    err = tmp_path / "12_0_log.err"
    err.write_text("Traceback: boom\n")
    err.with_suffix(".out").write_text("epoch 1\n")
    sqlite_store.set_status(runs[0].hash, "failed", log_path=str(err), error="boom")
    text = log_text(sqlite_store, runs[0].hash[:10])
    assert "epoch 1" in text and "Traceback: boom" in text
    with pytest.raises(LookupError, match="no log yet"):
        log_text(sqlite_store, runs[1].hash[:10])


def test_retry_rebuilds_failed_runs_with_their_dependencies(sqlite_store, planned):
    runs = registered(sqlite_store, planned)
    sqlite_store.set_status(runs[0].hash, "failed", error="x")
    sqlite_store.set_status(runs[1].hash, "cancelled")
    sqlite_store.set_status(runs[2].hash, "completed")
    again = failed_runs(sqlite_store, "ablation")
    assert sorted(r.hash for r in again) == sorted([runs[0].hash, runs[1].hash])
    assert all(r.config == next(p.config for p in runs if p.hash == r.hash) for r in again)
