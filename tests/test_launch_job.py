"""`RunJob` (harness/launch/job.py), called as its job process calls it, on a real SQLite store and the real
trainer: a run that fails, a run cancelled while it trains, and the heartbeat that renews the claim and stops
the job once the store refuses a beat."""

from __future__ import annotations

import threading

import pytest

from harness.config import run_hash
from harness.launch.job import Heartbeat, RunJob
from harness.paths import RunFile
from harness.store.records import FileRecord
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


@pytest.mark.slow
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


class TakenOverAt:
    """The real store, through which another launch takes the run over just before this job's first `method`
    call after its first epoch is stored: `log_epoch` (the next epoch's metrics and checkpoint) or `log_final`
    (the final results and weights). The other launch leaves files of its own in the run's folder."""

    def __init__(self, store, method: str, run_dir):  # type: ignore[no-untyped-def]
        self.store, self.method, self.run_dir = store, method, run_dir
        self.done = False

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.store, name)

    def _maybe_take_over(self, method: str, run_hash: str) -> None:
        if method != self.method or self.done or not self.store.metrics([run_hash]):
            return
        self.done = True
        assert self.store.give_up(run_hash, TEST_OWNER.token, "no word from its job")
        other = Owner(token="another", host="elsewhere", pid=2, started=0.0)
        assert self.store.claim(run_hash, other) and self.store.mark_started(run_hash, other.token, "elsewhere", {})
        for name in OTHERS_FILES:
            (self.run_dir / name).write_bytes(b"the other launch's " + name.encode())

    def log_epoch(self, run_hash, epoch, metrics, *, token, **more):  # type: ignore[no-untyped-def]
        self._maybe_take_over("log_epoch", run_hash)
        return self.store.log_epoch(run_hash, epoch, metrics, token=token, **more)

    def log_final(self, run_hash, metrics, info, *, token, files=None):  # type: ignore[no-untyped-def]
        self._maybe_take_over("log_final", run_hash)
        return self.store.log_final(run_hash, metrics, info, token=token, files=files)


OTHERS_FILES = ("checkpoint.another.e0.pt", "model.another.pt")


@pytest.mark.parametrize("method", ["log_epoch", "log_final"])
def test_a_job_whose_run_is_taken_over_stops_at_its_next_write_and_removes_what_it_could_not_publish(
        sqlite_store, tmp_path, method):
    from harness.launch.job import StoreSink
    from harness.store import NotOwner
    from harness.trainer import train
    from harness.trainer.loading import in_folders

    config = make_config(model={"name": "resnet_tiny_32"}, schedule={"epochs": 3})
    run = registered(sqlite_store, config)
    drive(sqlite_store, run, "running")
    run_dir = tmp_path / "run"
    store = TakenOverAt(sqlite_store, method, run_dir)
    # a heartbeat too slow to notice first: the writes themselves must refuse
    beat = Heartbeat(store, run, TEST_OWNER.token, every_s=3600)
    sink = StoreSink(store, store, run, TEST_OWNER.token, beat)
    with pytest.raises(NotOwner, match="another launch"):
        train(config, run_dir, sink, in_folders(lambda other: tmp_path / other), should_stop=beat.should_stop)
    assert store.done
    # no epoch after the takeover, no final results, no weights published
    last = 0 if method == "log_epoch" else 2
    assert {epoch for _, epoch, _, _ in sqlite_store.metrics([run])} == set(range(last + 1))
    record = sqlite_store.get_run(run)
    assert (record.owner, record.status, record.final, record.info) == ("another", "running", {}, {})
    assert (sqlite_store.predictions(run) == {}) == (method == "log_epoch")
    # the run's record names the last checkpoint this job published while it held the run; every other file of
    # this job (the checkpoint or weights written for the refused write) is gone; the other launch's untouched
    published = sqlite_store.run_files(run)
    assert set(published) == {"checkpoint"} and published["checkpoint"].name == f"checkpoint.{TEST_OWNER.token}.e{last}.pt"
    assert sorted(p.name for p in run_dir.iterdir()) == sorted([*OTHERS_FILES, published["checkpoint"].name])
    for name in OTHERS_FILES:
        assert (run_dir / name).read_bytes() == b"the other launch's " + name.encode()


def test_a_job_keeps_its_results_in_order_while_the_store_is_out_of_reach(sqlite_store, tmp_path):
    import socket

    from harness.launch.job import StoreSink
    from harness.store import Store

    with socket.socket() as probe:  # a port where nothing listens: every connection is refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    away = Store(f"postgresql+psycopg://nobody:x@127.0.0.1:{port}/none", patience_s=0.0)
    config = make_config(model={"name": "resnet_tiny_32"})
    run = registered(sqlite_store, config)
    drive(sqlite_store, run, "running")
    beat = Heartbeat(away, run, TEST_OWNER.token, every_s=3600)
    sink = StoreSink(sqlite_store, away, run, TEST_OWNER.token, beat)
    checkpoints = []
    for epoch in range(3):
        checkpoints.append(tmp_path / sink.file_name("checkpoint", epoch))
        checkpoints[-1].write_bytes(b"epoch %d" % epoch)
        # returns at once: training goes on; an older checkpoint not published yet is dropped for the newer one
        sink.log_epoch(epoch, {"top1": float(epoch)}, RunFile(checkpoints[-1], f"sha-{epoch}"))
    assert [p.exists() for p in checkpoints] == [False, False, True]
    sink.log_epoch(1, {"top1": 11.0})  # a resumed epoch: written after the first, replacing it
    assert len(sink.backlog) == 4 and sqlite_store.metrics([run]) == []
    sink.quick = sqlite_store  # the server is back
    sink._retry_at = 0.0
    assert sink.flush(wait=False)
    assert sink.backlog == []
    assert sqlite_store.metrics([run]) == [(run, 0, "top1", 0.0), (run, 1, "top1", 11.0), (run, 2, "top1", 2.0)]
    assert sqlite_store.run_files(run) == {"checkpoint": FileRecord(checkpoints[2].name, "sha-2")}
    assert sqlite_store.get_run(run).epoch == 2
    away.close()


def test_a_store_out_of_reach_is_waited_for_as_long_as_its_patience(tmp_path):
    import socket
    import time

    from harness.store import Store, StoreUnreachable

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    away = Store(f"postgresql+psycopg://nobody:x@127.0.0.1:{port}/none", patience_s=2.0)
    start = time.monotonic()
    with pytest.raises(StoreUnreachable, match=r"out of reach: .*refused.* \(tried for \d+ s\)"):
        away.get_run("0" * 64)
    assert time.monotonic() - start >= 2.0
    start = time.monotonic()
    with pytest.raises(StoreUnreachable):
        away.with_patience(0.0).get_run("0" * 64)
    assert time.monotonic() - start < 2.0
    away.close()


def test_epochs_kept_through_an_outage_keep_the_time_they_ended(sqlite_store):
    import socket
    import time
    from datetime import datetime, timezone

    from harness.launch.job import StoreSink
    from harness.store import Store

    with socket.socket() as probe:  # a port where nothing listens: every connection is refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    away = Store(f"postgresql+psycopg://nobody:x@127.0.0.1:{port}/none", patience_s=0.0)
    run = registered(sqlite_store, make_config(model={"name": "resnet_tiny_32"}))
    drive(sqlite_store, run, "running")
    sink = StoreSink(sqlite_store, away, run, TEST_OWNER.token, Heartbeat(away, run, TEST_OWNER.token, every_s=3600))
    ended = []
    for epoch in range(2):
        ended.append(datetime.now(timezone.utc))
        sink.log_epoch(epoch, {"top1": float(epoch)})
        time.sleep(0.05)
    back = datetime.now(timezone.utc)
    sink.quick, sink._retry_at = sqlite_store, 0.0  # the server is back
    assert sink.flush(wait=False)
    times = sqlite_store.epoch_ends([run])[run]
    assert sorted(times) == [0, 1] and times[0] < times[1] < back
    assert all(abs((times[e] - ended[e]).total_seconds()) < 0.04 for e in range(2))
    away.close()
