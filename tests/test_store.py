"""The results store's API, on a SQLite file and on PostgreSQL (`store` is parametrized)."""

from __future__ import annotations

import math
import os
import pickle
import sqlite3

import numpy as np
import pandas as pd
import pytest
from sqlalchemy.exc import StatementError

from harness.store import NewRun, RunRecord, StoreError, UnknownRun, open_store
from tests.runstate import TEST_OWNER, drive


def register(store, runs, spec="ablation"):
    store.register_experiment(spec, "name: ablation\n", "ablations/ablation.yaml")
    store.register_runs(spec, runs)


def test_register_runs_is_idempotent(store, planned):
    runs = planned(4)
    register(store, runs)
    register(store, runs)
    store.register_runs("ablation", planned(4, profile=None))  # the same runs reached without a profile
    records = store.runs()
    assert [r.hash for r in records] == [r.hash for r in runs]
    assert store.statuses([r.hash for r in runs] + ["f" * 64]) == {r.hash: "pending" for r in runs}
    assert store.counts()["run_memberships"] == 8
    first = records[0]
    assert (first.spec, first.variant, first.label, first.seed, first.profile) == ("ablation", "v0", "Variant 0", 0,
                                                                                  "quick")
    assert first.coords == {"model.name": "tiny_vit"}
    assert first.config == runs[0].config.as_json()
    assert [r.profile for r in store.runs(profile="")] == [None] * 4
    assert [e.name for e in store.experiments()] == ["ablation"]


def test_records_are_snapshots_detached_from_the_store(store, planned):
    run = planned(1)[0]
    register(store, [run])
    store.log_final(run.hash, {"top1": 50.0}, {"device": "cpu"})
    record = store.get_run(run.hash)
    drive(store, run.hash, "completed")
    # what was read stays as read, and a caller's edit of it never reaches the store
    assert record.status == "pending" and store.get_run(run.hash).status == "completed"
    record.config["batch_size"] = -1
    record.final["top1"] = 0.0
    again = store.get_run(run.hash)
    assert again.config == run.config.as_json() and again.final == {"top1": 50.0}
    # plain data, not an ORM row: it travels to another process (pickle) and compares by value
    assert type(record) is RunRecord and pickle.loads(pickle.dumps(again)) == again


def test_a_run_moves_through_the_lifecycle(store, planned):
    run = planned(1)[0]
    register(store, [run])
    assert store.claim(run.hash, TEST_OWNER)
    assert store.record_submission(run.hash, TEST_OWNER.token, "slurm:123", log_path="/tmp/x.err")
    assert store.mark_started(run.hash, TEST_OWNER.token, "node7",
                              {"git_commit": "abc123", "git_dirty": False, "torch": "2.14.1"})
    assert store.heartbeat(run.hash, TEST_OWNER.token, epoch=2)
    record = store.get_run(run.hash)
    assert record.status == "running" and record.host == "node7" and record.job_id == "slurm:123"
    assert record.log_path == "/tmp/x.err" and record.epoch == 2 and record.owner == TEST_OWNER.token
    assert record.started_at is not None and record.heartbeat_at is not None and record.ended_at is None
    assert record.started_at.tzinfo is not None and record.lease_until > record.heartbeat_at
    assert record.provenance["git_commit"] == "abc123" and record.provenance["git_dirty"] is False
    assert store.finish(run.hash, TEST_OWNER.token, "failed", error="Traceback: boom")
    record = store.get_run(run.hash)
    assert record.status == "failed" and record.error == "Traceback: boom" and record.ended_at is not None
    # claimed again (a rerun): the old error and job are gone
    assert store.claim(run.hash, TEST_OWNER)
    record = store.get_run(run.hash)
    assert record.status == "queued" and record.error is None and record.ended_at is None and record.job_id is None
    with pytest.raises(ValueError, match="unknown run state"):
        store.set_status(run.hash, "exploded")
    with pytest.raises(UnknownRun):
        store.set_status("0" * 64, "cancelled")
    assert store.get_run("0" * 64) is None


def test_log_epoch_upserts(store, planned):
    run = planned(1)[0]
    register(store, [run])
    store.log_epoch(run.hash, 0, {"train_loss": 2.0, "top1": 10.0})
    store.log_epoch(run.hash, 1, {"train_loss": 1.5, "top1": 20.0})
    store.log_epoch(run.hash, 1, {"train_loss": 1.4, "top1": 21.0, "top5": 50.0})  # a resumed epoch, again
    store.log_epoch(run.hash, 2, {})
    assert store.metrics() == [(run.hash, 0, "top1", 10.0), (run.hash, 0, "train_loss", 2.0),
                               (run.hash, 1, "top1", 21.0), (run.hash, 1, "top5", 50.0),
                               (run.hash, 1, "train_loss", 1.4)]
    assert store.metrics([run.hash], names=["top5"]) == [(run.hash, 1, "top5", 50.0)]
    assert store.get_run(run.hash).epoch == 1
    store.log_epoch(run.hash, 2, {"val_loss": float("nan")})
    assert math.isnan(store.metrics(names=["val_loss"])[0][3])
    with pytest.raises(UnknownRun):
        store.log_epoch("0" * 64, 0, {"top1": 1.0})


def test_each_epoch_keeps_when_it_ended(store, planned):
    from datetime import datetime, timedelta, timezone

    run = planned(1)[0]
    register(store, [run])
    t0 = datetime(2026, 12, 1, 12, 0, 0, 123000, tzinfo=timezone.utc)
    store.log_epoch(run.hash, 0, {"top1": 1.0}, ended_at=t0)
    store.log_epoch(run.hash, 1, {"top1": 2.0}, ended_at=t0 + timedelta(seconds=90))
    store.log_epoch(run.hash, 1, {"top1": 2.5}, ended_at=t0 + timedelta(seconds=95))  # a resumed epoch, again
    before = datetime.now(timezone.utc)
    store.log_epoch(run.hash, 2, {"top1": 3.0})  # no time given: now
    ends = store.epoch_ends([run.hash, "0" * 64])
    assert list(ends) == [run.hash] and ends[run.hash][0] == t0 and ends[run.hash][1] == t0 + timedelta(seconds=95)
    assert ends[run.hash][2] >= before - timedelta(seconds=1)


def test_final_metrics_and_info_are_kept_apart_from_epochs(store, planned):
    run = planned(1)[0]
    register(store, [run])
    store.log_epoch(run.hash, 0, {"top1": 10.0})
    store.log_final(run.hash, {"top1": 11.0, "params": 5e6}, {"device": "cpu", "throughput_batch": 64})
    store.log_final(run.hash, {"top1": 12.0}, {})
    record = store.get_run(run.hash)
    assert record.final == {"top1": 12.0, "params": 5e6}
    assert record.info == {"device": "cpu", "throughput_batch": "64"}
    assert store.metrics() == [(run.hash, 0, "top1", 10.0)]


def test_typed_queries_read_a_key_no_run_holds_as_no_run(store, planned):
    """The store's own queries (what launch asks) find their runs in the database; a key that no run holds yet
    is no run found, never a FilterError for the caller to read as "none", which a user's filter still raises."""
    from harness.store.where import FilterError, parse

    runs = planned(4)  # models tiny_vit, tiny_cnn, tiny_vit, tiny_cnn
    register(store, runs)
    assert store.runs_with_info("teacher_weights", ["a.tag"]) == []
    assert store.completed_runs_of(["tiny_vit"]) == []
    with pytest.raises(FilterError, match="unknown key 'info.teacher_weights'"):
        store.runs(where=parse("info.teacher_weights == 'a.tag'"))
    store.log_final(runs[0].hash, {"top1": 1.0}, {"teacher_weights": "a.tag"})
    store.log_final(runs[1].hash, {"top1": 1.0}, {"teacher_weights": "b.tag"})
    assert [r.hash for r in store.runs_with_info("teacher_weights", ["a.tag", "c.tag"])] == [runs[0].hash]
    for run in runs[:3]:
        drive(store, run.hash, "completed")
    assert [r.hash for r in store.completed_runs_of(["tiny_vit"])] == [runs[0].hash, runs[2].hash]
    assert [r.hash for r in store.completed_runs_of(["tiny_cnn", "other"])] == [runs[1].hash]


def test_predictions_round_trip_compactly(store, planned):
    run = planned(1)[0]
    register(store, [run])
    labels = np.arange(1000, dtype=np.int64) % 300
    store.log_predictions(run.hash, "cls", labels)
    store.log_predictions(run.hash, "probs", np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4))
    store.log_predictions(run.hash, "cls", labels[::-1])  # replaced, not added
    got = store.predictions(run.hash)
    assert sorted(got) == ["cls", "probs"]
    assert got["cls"].dtype == np.int16 and np.array_equal(got["cls"], labels[::-1])
    assert got["probs"].shape == (3, 4) and got["probs"].dtype == np.float32
    assert store.predictions(run.hash)["cls"].flags.writeable


def test_run_filters_use_bound_parameters(store, planned):
    runs = planned(4)
    register(store, runs)
    register(store, planned(2, spec="other", start=10), spec="other")
    drive(store, runs[1].hash, "completed")
    assert len(store.runs(spec="ablation")) == 4
    assert [r.hash for r in store.runs(status="completed")] == [runs[1].hash]
    assert len(store.runs(status=["pending", "completed"], spec="ablation")) == 4
    # a filter value that would be SQL if it were pasted in finds nothing and harms nothing
    assert store.runs(spec="x' OR '1'='1") == []
    assert store.runs(spec="ablation'; DROP TABLE runs; --") == []
    assert len(store.runs()) == 6


def test_a_failed_write_rolls_back(store):
    bad = NewRun(hash="a" * 64, config={"x": object()}, profile=None, variant="v", label="v", coords={}, seed=0)
    # the experiment row is written first, then the run's config fails to serialize (SQLAlchemy wraps the
    # TypeError on SQLite; psycopg raises it as it is): both writes are rolled back
    with pytest.raises((StatementError, TypeError), match="Object of type object is not JSON serializable"):
        store.import_runs("broken", [bad])
    assert store.counts()["experiments"] == 0 and store.counts()["runs"] == 0


def test_imported_runs_carry_their_source(store):
    run = NewRun(hash="b" * 64, config={"model": {"name": "deit_tiny_patch16_224"}}, profile=None,
                 variant="deit_ti", label="DeiT-Ti", coords={}, seed=0, status="completed", source="paper",
                 final={"top1": 72.2}, info={"note": "Table 3"})
    assert store.import_runs("distillation", [run]) == 1
    assert store.import_runs("distillation", [run]) == 0
    record = store.get_run(run.hash)
    assert (record.status, record.source, record.final, record.info) == ("completed", "paper", {"top1": 72.2},
                                                                         {"note": "Table 3"})
    assert record.ended_at is not None
    assert [r.hash for r in store.runs(source="paper")] == [run.hash]


def test_views_read_with_plain_pandas(store, planned):
    runs = planned(2)
    register(store, runs)
    store.log_epoch(runs[0].hash, 0, {"top1": 10.0})
    store.log_epoch(runs[0].hash, 1, {"top1": 30.0})
    store.log_final(runs[0].hash, {"top1": 31.0, "top5": 90.0}, {})
    if store.engine.dialect.name == "sqlite":
        con = sqlite3.connect(store.url.database)
    else:
        con = store.engine.connect()
    try:
        summary = pd.read_sql("SELECT * FROM run_summary ORDER BY variant", con)
        tidy = pd.read_sql("SELECT * FROM run_metrics ORDER BY epoch", con)
        final = pd.read_sql("SELECT * FROM run_final_metrics ORDER BY name", con)
    finally:
        con.close()
    assert list(summary["variant"]) == ["v0", "v1"] and list(summary["profile"]) == ["quick", "quick"]
    assert summary.loc[0, "top1"] == 31.0 and summary.loc[0, "last_epoch"] == 1 and pd.isna(summary.loc[1, "top1"])
    assert list(tidy["value"]) == [10.0, 30.0] and set(tidy["hash"]) == {runs[0].hash}
    assert list(final["name"]) == ["top1", "top5"]


def test_password_is_never_shown(pg_url):
    from sqlalchemy.engine import make_url

    url = make_url(pg_url).set(password="s3cr3t-pw")
    with pytest.raises(StoreError) as caught:
        open_store(url.render_as_string(hide_password=False))
    assert "s3cr3t-pw" not in str(caught.value) and "***" in str(caught.value)
    # the fixture's URL leaves its password in PGPASSWORD: put it back in the URL
    with_password = make_url(pg_url).set(password=os.environ.get("PGPASSWORD") or None).render_as_string(False)
    with open_store(with_password) as store:
        assert make_url(with_password).password not in (repr(store), store.display_url)
        assert "***" in store.display_url


def test_new_sqlite_store_uses_wal_and_foreign_keys(sqlite_store):
    with sqlite_store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000


def test_reading_a_missing_store_creates_nothing(tmp_path):
    path = tmp_path / "none.db"
    with pytest.raises(StoreError, match="no results store"):
        open_store(f"sqlite:///{path}", create=False)
    assert not path.exists()


@pytest.mark.slow  # starts processes
def test_speed_benchmark_runs(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "store_speed.py"
    out = subprocess.run([sys.executable, str(script), "--runs", "50", "--write-runs", "2", "--epochs", "3"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert "rows/s" in out and "50 runs" in out and "targets" in out
