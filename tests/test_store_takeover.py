"""Taking over a dead owner's run (`Store.take_over`): one conditional update, never `failed` in between."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from harness.states import Owner
from harness.store import open_store
from tests.freeze import is_stopped
from tests.runstate import TEST_OWNER, drive
from tests.tiny_spec import harness_env

# launches whose owners die, in processes: the full suite's, not the fast lane's
pytestmark = pytest.mark.slow

OWNERS = [Owner(token=f"launch-{i}", host=f"host{i}", pid=100 + i, started=float(i)) for i in range(3)]


def registered(store, planned):
    run = planned(1)[0]
    store.register_experiment("ablation", "", "")
    store.register_runs("ablation", [run])
    return run


def test_a_take_over_moves_a_dead_owners_run_to_the_new_owner_with_the_cause(store, planned):
    run = registered(store, planned)
    drive(store, run.hash, "running", job_id="local:4711")
    assert store.take_over(run.hash, TEST_OWNER.token, "its job's process 4711 is gone", OWNERS[0])
    record = store.get_run(run.hash)
    assert (record.status, record.owner, record.owner_host, record.owner_pid) == ("queued", "launch-0", "host0", 100)
    assert record.error == "its job's process 4711 is gone" and record.job_id is None and record.ended_at is None
    # the dead owner's job can write nothing more; the new owner can go on as after a claim
    assert not store.heartbeat(run.hash, TEST_OWNER.token)
    assert store.record_submission(run.hash, OWNERS[0].token, "local:5")
    assert store.mark_started(run.hash, OWNERS[0].token, "host0", {})
    assert store.get_run(run.hash).error is None


def test_a_take_over_refuses_a_stale_owner_and_a_finished_run(store, planned):
    run = registered(store, planned)
    drive(store, run.hash, "running")
    assert not store.take_over(run.hash, "somebody-else", "gone", OWNERS[0])
    record = store.get_run(run.hash)
    assert (record.status, record.owner, record.error) == ("running", TEST_OWNER.token, None)
    assert store.take_over(run.hash, TEST_OWNER.token, "gone", OWNERS[0])
    # a second launch that judged the same dead owner a moment later finds the run taken
    assert not store.take_over(run.hash, TEST_OWNER.token, "gone", OWNERS[1])
    assert store.get_run(run.hash).owner == OWNERS[0].token
    store.finish(run.hash, OWNERS[0].token, "cancelled")
    assert not store.take_over(run.hash, OWNERS[0].token, "gone", OWNERS[1])
    assert store.get_run(run.hash).status == "cancelled"
    # a pending run has no owner to take over from: it is claimed
    other = planned(2)[1]
    store.register_runs("ablation", [other])
    assert not store.take_over(other.hash, None, "gone", OWNERS[1])
    assert store.get_run(other.hash).status == "pending"


def test_readers_never_see_a_run_failed_while_it_changes_hands(store_url, planned):
    """A launch waiting on a run fails its own runs when it reads `failed`: a take over must not pass there."""
    with open_store(store_url) as store:
        run = registered(store, planned)
        drive(store, run.hash, "running")
        seen: set[str] = set()
        stop = threading.Event()

        def read() -> None:
            with open_store(store_url, create=False) as reader:
                while not stop.is_set():
                    seen.add(reader.get_run(run.hash).status)

        readers = [threading.Thread(target=read) for _ in range(2)]
        for thread in readers:
            thread.start()
        try:
            current = TEST_OWNER
            for i in range(150):
                new = OWNERS[i % len(OWNERS)]
                assert store.take_over(run.hash, current.token, f"owner {current.token} is gone", new)
                current = new
        finally:
            stop.set()
            for thread in readers:
                thread.join()
    assert seen <= {"running", "queued"} and "queued" in seen, seen


# A job frozen (SIGSTOP) inside its fenced epoch write: after proving its claim, before its rows go in.
FROZEN_WRITER = """
import os, signal, sys
from harness.store import NotOwner, open_store
from harness.store.store import Store

proven = Store._run_id
def freeze_once(self, session, run_hash):
    Store._run_id = proven
    os.kill(os.getpid(), signal.SIGSTOP)
    return proven(self, session, run_hash)
Store._run_id = freeze_once

with open_store(sys.argv[1], create=False) as store:
    try:
        store.log_epoch(sys.argv[2], 3, {"top1": 99.0}, token=sys.argv[3])
        print("written")
    except NotOwner:
        print("refused")
"""


def test_a_job_frozen_inside_a_fenced_write_neither_blocks_the_take_over_nor_writes_after_it(pg_url, planned):
    """On PostgreSQL the frozen job's transaction holds the run's row lock: the server ends it after half the
    job's lease, so a launch taking the run over waits that long at most, and the woken job's write is refused."""
    with open_store(pg_url) as store:
        run = registered(store, planned)
        drive(store, run.hash, "running")
        job = subprocess.Popen([sys.executable, "-c", FROZEN_WRITER, pg_url, run.hash, TEST_OWNER.token],
                               env=harness_env(HARNESS_LEASE_S="2"), stdout=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while not is_stopped(job.pid):
                assert job.poll() is None and time.monotonic() < deadline, "the job never reached its write"
                time.sleep(0.05)
            taken: list[bool] = []
            started = time.monotonic()
            taking_over = threading.Thread(target=lambda: taken.append(
                store.take_over(run.hash, TEST_OWNER.token, "its lease lapsed", OWNERS[0])), daemon=True)
            taking_over.start()
            taking_over.join(timeout=30)
            waited = time.monotonic() - started
            assert taken == [True], "the take over waited on the frozen job's lock"
            assert waited < 10, waited
        finally:
            os.kill(job.pid, signal.SIGCONT)
        out, _ = job.communicate(timeout=120)
        assert out.strip() == "refused", out
        assert store.metrics([run.hash]) == []
        assert store.get_run(run.hash).owner == OWNERS[0].token
