"""The lifecycle's writes in the store: one owner per claim, writes that need the claim, legal moves only."""

from __future__ import annotations

import multiprocessing as mp
from datetime import timedelta

import pytest

from harness.states import ACTIVE, FINISHED, MOVES_TO, STATUSES, Owner, can_move
from harness.store import open_store
from tests.runstate import TEST_OWNER, drive

OTHER = Owner(token="other-owner", host="elsewhere", pid=2, started=0.0)


def registered(store, planned, n=1):
    runs = planned(n)
    store.register_experiment("ablation", "", "")
    store.register_runs("ablation", runs)
    return runs


def test_the_state_table_is_closed_and_consistent():
    assert set(MOVES_TO) == set(STATUSES)
    assert all(source in STATUSES for sources in MOVES_TO.values() for source in sources)
    assert not set(ACTIVE) & set(FINISHED)
    # a finished run moves again only through a new claim
    assert all(not can_move(done, new) for done in FINISHED for new in STATUSES if new != "queued")
    assert not can_move("completed", "queued")


def test_only_one_owner_claims_a_run(store, planned):
    run = registered(store, planned)[0]
    assert store.claim(run.hash, TEST_OWNER)
    assert not store.claim(run.hash, OTHER)
    record = store.get_run(run.hash)
    assert (record.status, record.owner, record.owner_host) == ("queued", TEST_OWNER.token, TEST_OWNER.host)


def _claim(url: str, run_hash: str, index: int, barrier, results) -> None:
    store = open_store(url)
    owner = Owner(token=f"owner-{index}", host="h", pid=index, started=0.0)
    barrier.wait()
    results.put(store.claim(run_hash, owner))
    store.close()


@pytest.mark.slow  # starts processes
def test_eight_processes_claiming_at_once_give_one_owner(store, planned):
    run = registered(store, planned)[0]
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(8), ctx.Queue()
    url = store.url.render_as_string(hide_password=False)
    procs = [ctx.Process(target=_claim, args=(url, run.hash, i, barrier, results)) for i in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    won = [results.get(timeout=5) for _ in procs]
    assert won.count(True) == 1
    assert store.get_run(run.hash).owner.startswith("owner-")


def test_writes_need_the_claim(store, planned):
    run = registered(store, planned)[0]
    drive(store, run.hash, "running")
    assert not store.heartbeat(run.hash, OTHER.token)
    assert not store.finish(run.hash, OTHER.token, "completed")
    assert not store.record_submission(run.hash, OTHER.token, "local:9")
    assert store.get_run(run.hash).status == "running"


def test_a_cancelled_run_tells_its_job_to_stop(store, planned):
    run = registered(store, planned)[0]
    drive(store, run.hash, "running")
    assert store.cancel(run.hash)
    # the job's next heartbeat fails: it stops, and cannot turn the run completed
    assert not store.heartbeat(run.hash, TEST_OWNER.token)
    assert not store.finish(run.hash, TEST_OWNER.token, "completed")
    record = store.get_run(run.hash)
    assert record.status == "cancelled" and record.error == "cancelled by the user"


def test_a_run_given_up_for_dead_and_claimed_again_is_not_overwritten_by_its_old_job(store, planned):
    run = registered(store, planned)[0]
    drive(store, run.hash, "running")
    assert store.give_up(run.hash, TEST_OWNER.token, "the job's process is gone")
    assert store.claim(run.hash, OTHER)
    # the old job comes back: every write is refused, the new owner keeps the run
    assert not store.mark_started(run.hash, TEST_OWNER.token, "node1", {})
    assert not store.finish(run.hash, TEST_OWNER.token, "completed")
    # a second launcher that saw the old owner gives up nothing: the run changed hands
    assert not store.give_up(run.hash, TEST_OWNER.token, "stale view")
    record = store.get_run(run.hash)
    assert (record.status, record.owner) == ("queued", OTHER.token)


def test_a_resumed_run_keeps_its_first_start_time(store, planned):
    run = registered(store, planned)[0]
    drive(store, run.hash, "requeued")
    first = store.get_run(run.hash).started_at
    assert store.mark_started(run.hash, TEST_OWNER.token, "node2", {})
    record = store.get_run(run.hash)
    assert record.status == "running" and record.started_at == first and record.host == "node2"


def test_a_launcher_releases_what_it_never_submitted_and_renews_what_it_holds(store, planned):
    runs = registered(store, planned, n=3)
    for run in runs:
        assert store.claim(run.hash, TEST_OWNER, lease=timedelta(seconds=1))
    before = store.get_run(runs[0].hash).lease_until
    assert store.renew_leases(TEST_OWNER.token, lease=timedelta(minutes=10)) == 3
    assert store.get_run(runs[0].hash).lease_until - before > timedelta(minutes=9)
    assert store.release(runs[0].hash, TEST_OWNER.token)
    record = store.get_run(runs[0].hash)
    assert (record.status, record.owner) == ("pending", None)
    assert not store.release(runs[1].hash, OTHER.token)


def test_moves_outside_the_table_are_refused(store, planned):
    run = registered(store, planned)[0]
    drive(store, run.hash, "completed")
    assert not store.set_status(run.hash, "failed")
    assert not store.claim(run.hash, OTHER)
    assert not store.cancel(run.hash)
    assert store.get_run(run.hash).status == "completed"
    with pytest.raises(ValueError, match="not an ending"):
        store.finish(run.hash, TEST_OWNER.token, "running")


def test_imported_results_are_never_claimed(store, planned):
    from harness.store import NewRun

    store.import_runs("paper", [NewRun(hash="a" * 64, config={}, profile=None, variant="v", label="v", coords={},
                                       seed=0, status="failed", source="deit-paper")])
    assert not store.claim("a" * 64, TEST_OWNER)


def test_dependencies_are_stored_when_runs_are_registered(store, planned):
    teacher, student = planned(2)
    from dataclasses import replace

    student = replace(student, depends_on=(teacher.hash,))
    store.register_runs("ablation", [teacher, student])
    assert store.get_run(student.hash).depends_on == (teacher.hash,)
    assert store.get_run(teacher.hash).depends_on == ()


def _stored(store, run_hash: str):  # type: ignore[no-untyped-def]
    """Everything the store holds of one run: its record, per-epoch metrics and predictions."""
    predictions = {name: (array.dtype.str, array.shape, array.tobytes())
                   for name, array in store.predictions(run_hash).items()}
    return store.get_run(run_hash), store.metrics([run_hash]), predictions


def test_every_write_of_a_stale_owner_is_refused_and_changes_nothing(store, planned):
    import numpy as np

    from harness.store import NotOwner

    run = registered(store, planned)[0]
    drive(store, run.hash, "running")
    store.log_epoch(run.hash, 0, {"top1": 1.0}, token=TEST_OWNER.token)
    # its lease lapsed: another launch gives it up, claims it and trains it to the end
    assert store.give_up(run.hash, TEST_OWNER.token, "no word from its job")
    assert store.claim(run.hash, OTHER)
    assert store.mark_started(run.hash, OTHER.token, "elsewhere", {})
    store.log_epoch(run.hash, 0, {"top1": 5.0}, token=OTHER.token)
    store.log_epoch(run.hash, 1, {"top1": 6.0}, token=OTHER.token)
    store.log_predictions(run.hash, "cls", np.array([1, 2, 3]), token=OTHER.token)
    store.log_final(run.hash, {"top1": 6.0}, {"device": "other"}, token=OTHER.token)
    assert store.finish(run.hash, OTHER.token, "completed")
    before = _stored(store, run.hash)

    stale = TEST_OWNER.token
    for write in (lambda: store.log_epoch(run.hash, 1, {"top1": 99.0}, token=stale),
                  lambda: store.log_epoch(run.hash, 2, {"top1": 99.0}, token=stale),
                  lambda: store.log_epoch(run.hash, 2, {}, token=stale),
                  lambda: store.log_final(run.hash, {"top1": 99.0, "new": 1.0}, {"device": "stale"}, token=stale),
                  lambda: store.log_predictions(run.hash, "cls", np.array([9, 9, 9]), token=stale),
                  lambda: store.log_predictions(run.hash, "dist", np.array([9]), token=stale)):
        with pytest.raises(NotOwner, match="completed under another launch's claim") as refused:
            write()
        assert (refused.value.status, refused.value.owner) == ("completed", OTHER.token)
    assert not store.heartbeat(run.hash, stale, epoch=5)
    assert not store.mark_started(run.hash, stale, "node1", {})
    assert not store.record_submission(run.hash, stale, "local:9")
    assert not store.requeue(run.hash, stale)
    assert not store.release(run.hash, stale)
    assert not store.finish(run.hash, stale, "failed", error="stale")
    assert store.renew_leases(stale) == 0
    assert not store.holds(run.hash, stale) and store.holds(run.hash, OTHER.token)
    assert _stored(store, run.hash) == before


def test_results_of_a_cancelled_run_are_refused_even_to_its_owner(store, planned):
    from harness.store import NotOwner

    run = registered(store, planned)[0]
    drive(store, run.hash, "running")
    assert store.cancel(run.hash)
    with pytest.raises(NotOwner, match="it is cancelled$"):
        store.log_epoch(run.hash, 0, {"top1": 1.0}, token=TEST_OWNER.token)
    assert store.metrics([run.hash]) == []
    # its files are still its own: no other launch holds the run
    assert store.holds(run.hash, TEST_OWNER.token)


def test_a_move_whose_commit_went_unseen_counts_as_done_when_tried_again(store, planned):
    run = registered(store, planned)[0]
    assert store.claim(run.hash, TEST_OWNER)
    assert store.claim(run.hash, TEST_OWNER)  # the same claim again (a retry after a lost connection)
    assert not store.claim(run.hash, OTHER)
    assert store.record_submission(run.hash, TEST_OWNER.token, "local:1")
    assert store.mark_started(run.hash, TEST_OWNER.token, "node1", {})
    assert store.finish(run.hash, TEST_OWNER.token, "completed")
    assert store.finish(run.hash, TEST_OWNER.token, "completed")
    assert not store.finish(run.hash, TEST_OWNER.token, "failed")


def test_the_lease_comes_from_HARNESS_LEASE_S_for_claims_heartbeats_and_renewals(store, planned, monkeypatch):
    from harness.states import lease, renew_every_s

    run = registered(store, planned)[0]
    monkeypatch.setenv("HARNESS_LEASE_S", "7")
    assert lease() == timedelta(seconds=7) and renew_every_s() == pytest.approx(0.7)
    assert store.claim(run.hash, TEST_OWNER)
    record = store.get_run(run.hash)
    assert timedelta(seconds=5) < record.lease_until - record.created_at < timedelta(seconds=60)
    monkeypatch.setenv("HARNESS_LEASE_S", "600")
    assert store.renew_leases(TEST_OWNER.token) == 1
    assert store.get_run(run.hash).lease_until - record.lease_until > timedelta(seconds=500)
    monkeypatch.delenv("HARNESS_LEASE_S")
    assert lease() == timedelta(seconds=300) and renew_every_s() == 30.0
    for bad in ("soon", "0", "-5", "nan"):
        monkeypatch.setenv("HARNESS_LEASE_S", bad)
        with pytest.raises(ValueError, match="HARNESS_LEASE_S must be a positive number of seconds"):
            lease()
