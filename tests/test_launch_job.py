"""`RunJob` (harness/launch/job.py), called as its job process calls it, on a real SQLite store and the real
trainer: a run that fails, a run cancelled while it trains, and the heartbeat that renews the claim and stops
the job once the store refuses a beat."""

from __future__ import annotations

import threading

import pytest

from harness.config import run_hash
from harness.launch.job import Heartbeat, RunJob
from harness.spec import PlannedRun
from harness.states import Owner
from harness.trainer import RunStopped
from tests.runstate import TEST_OWNER, drive
from tests.slurm_fixtures import wait_until
from tests.test_trainer import make_config

# a short heartbeat, so that a cancellation is seen within a training step or two
BEAT_S = 0.05


def registered(store, config) -> str:
    run = PlannedRun(hash=run_hash(config), config=config, spec="jobs", profile=None, variant="v", label="v",
                     coords={}, seed=config.seed)
    store.register_runs("jobs", [run])
    return run.hash


def job(url: str, config, tmp_path) -> RunJob:
    return RunJob(run_hash(config), config.as_json(), url, str(tmp_path / "out"), owner=TEST_OWNER.token,
                  threads=1, heartbeat_s=BEAT_S)


def wait_for(condition, timeout: float, what: str):
    return wait_until(condition, timeout, what, every_s=0.02)


def test_a_run_whose_trainer_raises_ends_failed_with_the_exception_text(sqlite_store, sqlite_url, tmp_path):
    # 128 images a batch from 96: the trainer raises as it builds the run
    config = make_config(model={"name": "resnet_tiny_32"}, batch_size=128)
    run = registered(sqlite_store, config)
    drive(sqlite_store, run, "submitted")
    with pytest.raises(ValueError, match="larger than the training set"):
        job(sqlite_url, config, tmp_path)()
    record = sqlite_store.get_run(run)
    assert record.status == "failed"
    assert record.error == "ValueError: batch_size 128 is larger than the training set (96 images)", record.error


def test_a_run_cancelled_while_it_trains_stops_and_stays_cancelled(sqlite_store, sqlite_url, tmp_path):
    # three epochs of about a second each
    config = make_config(model={"name": "resnet_tiny_32"}, data={"train_subset": 400}, batch_size=8,
                         schedule={"epochs": 3})
    run = registered(sqlite_store, config)
    drive(sqlite_store, run, "submitted")

    def cancel_after_the_first_epoch() -> None:
        wait_for(lambda: sqlite_store.get_run(run).epoch == 0, 60, "the first epoch")
        assert sqlite_store.cancel(run, "cancelled by the test")

    canceller = threading.Thread(target=cancel_after_the_first_epoch)
    canceller.start()
    try:
        # the heartbeat thread sees it during the second epoch (the beat at the end of an epoch would only see
        # it after the second epoch)
        with pytest.raises(RunStopped, match="stopped at epoch 1, step .*: cancelled: cancelled by the test"):
            job(sqlite_url, config, tmp_path)()
    finally:
        canceller.join()
    record = sqlite_store.get_run(run)
    assert (record.status, record.error, record.epoch) == ("cancelled", "cancelled by the test", 0)
    assert record.final == {}


def running(store, planned) -> str:
    run = planned(1)[0]
    store.register_runs("ablation", [run])
    drive(store, run.hash, "running")
    return run.hash


def test_heartbeats_renew_the_claim(sqlite_store, planned):
    run = running(sqlite_store, planned)
    before = sqlite_store.get_run(run)
    beat = Heartbeat(sqlite_store, run, TEST_OWNER.token, every_s=BEAT_S).start()
    try:
        after = wait_for(lambda: (r := sqlite_store.get_run(run)).heartbeat_at > before.heartbeat_at and r, 10,
                         "a heartbeat")
    finally:
        beat.stop()
    assert after.lease_until > before.lease_until and after.status == "running"
    assert beat.should_stop() is None


def claimed_by_another(store, run: str) -> None:
    assert store.give_up(run, TEST_OWNER.token, "taken for dead")
    assert store.claim(run, Owner(token="another", host="elsewhere", pid=2, started=0.0))


@pytest.mark.parametrize("take_away, reason", [
    (lambda store, run: store.cancel(run, "by the test"), "cancelled: by the test"),
    (claimed_by_another, "this job no longer owns the run (its state: queued)"),
], ids=["cancelled", "claimed-by-another"])
def test_a_beat_the_store_refuses_stops_the_job(sqlite_store, planned, take_away, reason):
    run = running(sqlite_store, planned)
    beat = Heartbeat(sqlite_store, run, TEST_OWNER.token, every_s=BEAT_S).start()
    try:
        assert beat.should_stop() is None
        take_away(sqlite_store, run)
        assert wait_for(beat.should_stop, 10, "the heartbeat to give a reason to stop") == reason
        beat._thread.join(timeout=5)
        assert not beat._thread.is_alive()  # it beats no more
    finally:
        beat.stop()
