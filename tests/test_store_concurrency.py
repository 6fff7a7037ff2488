"""Many writers at once, on a SQLite file and on PostgreSQL: no lost row, no duplicate, no lock error."""

from __future__ import annotations

import multiprocessing
import traceback

import pytest

from harness.store import open_store
from tests.runstate import TEST_OWNER, drive

WRITERS = 16
EPOCHS = 8
METRICS = 10
fork = multiprocessing.get_context("fork")


def _run_all(target, args_list) -> None:
    errors = fork.Queue()
    barrier = fork.Barrier(len(args_list))
    procs = [fork.Process(target=_guarded, args=(target, errors, barrier, *args)) for args in args_list]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert not found, "\n".join(found)
    assert [p.exitcode for p in procs] == [0] * len(procs)


def _guarded(target, errors, barrier, *args) -> None:
    try:
        target(barrier, *args)
    except BaseException:
        errors.put(traceback.format_exc())
        raise SystemExit(1)


def _write(barrier, url: str, run_hash: str, shared_hash: str, index: int) -> None:
    store = open_store(url)
    barrier.wait()
    drive(store, run_hash, "submitted")
    assert store.mark_started(run_hash, TEST_OWNER.token, f"node{index}",
                              {"git_commit": "abc", "slurm_job_id": str(index)})
    for epoch in range(EPOCHS):
        store.log_epoch(run_hash, epoch, {f"m{k}": epoch * 100.0 + k for k in range(METRICS)})
        assert store.heartbeat(run_hash, TEST_OWNER.token, epoch=epoch)
        store.log_epoch(shared_hash, epoch, {"everyone": float(epoch)})  # the same rows from every writer
        if epoch == EPOCHS // 2:
            store.log_epoch(run_hash, epoch, {f"m{k}": epoch * 100.0 + k for k in range(METRICS)})  # resumed
    store.log_final(run_hash, {"top1": float(index)}, {"device": "cpu"})
    assert store.finish(run_hash, TEST_OWNER.token, "completed")
    store.close()


@pytest.mark.slow  # starts processes
def test_sixteen_writers_lose_nothing(store, planned):
    runs = planned(WRITERS + 1)
    store.register_experiment("ablation", "", "")
    store.register_runs("ablation", runs)
    shared = runs[-1].hash
    url = store.url.render_as_string(hide_password=False)
    _run_all(_write, [(url, run.hash, shared, i) for i, run in enumerate(runs[:WRITERS])])
    records = {r.hash: r for r in store.runs()}
    for i, run in enumerate(runs[:WRITERS]):
        record = records[run.hash]
        assert record.status == "completed" and record.final == {"top1": float(i)} and record.host == f"node{i}"
        assert record.epoch == EPOCHS - 1 and record.provenance["slurm_job_id"] == str(i)
    rows = store.metrics()
    assert len(rows) == WRITERS * EPOCHS * METRICS + EPOCHS
    assert len({(h, e, n) for h, e, n, _ in rows}) == len(rows)
    assert store.metrics([shared]) == [(shared, e, "everyone", float(e)) for e in range(EPOCHS)]


def _register(barrier, url: str, runs) -> None:
    barrier.wait()
    store = open_store(url)  # the store does not exist yet: creating it races too
    store.register_experiment("ablation", "name: ablation\n", "ablation.yaml")
    store.register_runs("ablation", runs)
    store.close()


def test_concurrent_launches_register_each_run_once(store_url, planned):
    runs = planned(30, seeds=2)
    _run_all(_register, [(store_url, runs)] * 6)
    with open_store(store_url) as store:
        assert [r.hash for r in store.runs()] == [r.hash for r in runs]
        counts = store.counts()
        assert counts["runs"] == 60 and counts["run_memberships"] == 60 and counts["experiments"] == 1


def _open(barrier, url: str) -> None:
    barrier.wait()
    open_store(url).close()


def test_sixteen_processes_create_one_fresh_store(store_url):
    """Each decides what it sees under the migration lock: none finds half of another's schema."""
    _run_all(_open, [(store_url,)] * WRITERS)
    with open_store(store_url) as store:
        assert store.counts()["runs"] == 0
