"""Alembic revisions: a new store equals the models; an old store is refused, then upgraded with every row kept."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import make_url

from harness.store import SchemaOutOfDate, StoreError, open_store, store_revision, upgrade_store
from harness.store.db import make_engine, parse_url
from harness.store.migrate import head_revision, revisions
from harness.store.schema import Base
from tests.runstate import TEST_OWNER

FIRST = "0001"
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
TZ = sa.DateTime(timezone=True)

experiments = sa.table("experiments", sa.column("id"), sa.column("name"), sa.column("spec_text"),
                       sa.column("spec_path"), sa.column("created_at", TZ), sa.column("updated_at", TZ))
runs = sa.table("runs", sa.column("id"), sa.column("hash"), sa.column("config", sa.JSON), sa.column("status"),
                sa.column("created_at", TZ), sa.column("updated_at", TZ), sa.column("started_at", TZ),
                sa.column("ended_at", TZ), sa.column("host"), sa.column("error"), sa.column("job_id"))
memberships = sa.table("run_memberships", sa.column("experiment_id"), sa.column("run_id"), sa.column("profile"),
                       sa.column("variant"), sa.column("label"), sa.column("coords", sa.JSON), sa.column("seed"))
metrics = sa.table("metrics", sa.column("run_id"), sa.column("epoch"), sa.column("name"), sa.column("value"))
finals = sa.table("final_metrics", sa.column("run_id"), sa.column("name"), sa.column("value"))
info = sa.table("run_info", sa.column("run_id"), sa.column("key"), sa.column("value"))
predictions = sa.table("predictions", sa.column("run_id"), sa.column("name"), sa.column("dtype"),
                       sa.column("shape", sa.JSON), sa.column("data", sa.LargeBinary))


def test_revisions_form_one_line():
    assert revisions()[0] == FIRST and revisions()[-1] == head_revision() and len(revisions()) >= 2


def test_new_store_schema_equals_the_models(store_url):
    with open_store(store_url) as store, store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    assert store_revision(store_url) == (head_revision(), head_revision())


def _fill_first_revision(url: str) -> None:
    parsed = parse_url(url)
    engine = make_engine(parsed)
    with engine.begin() as conn:
        conn.execute(experiments.insert(), [{"id": 1, "name": "distillation", "spec_text": "name: distillation\n",
                                             "spec_path": "ablations/distillation.yaml", "created_at": NOW,
                                             "updated_at": NOW}])
        conn.execute(runs.insert(), [
            {"id": i, "hash": f"{i:064x}", "config": {"model": {"name": f"m{i}"}, "seed": i},
             "status": "completed" if i < 3 else "failed", "created_at": NOW, "updated_at": NOW, "started_at": NOW,
             "ended_at": NOW, "host": "node1", "error": None if i < 3 else "boom", "job_id": str(100 + i)}
            for i in range(1, 4)])
        conn.execute(memberships.insert(), [
            {"experiment_id": 1, "run_id": i, "profile": "quick", "variant": f"v{i}", "label": f"V{i}",
             "coords": {"model.name": f"m{i}"}, "seed": i} for i in range(1, 4)])
        conn.execute(metrics.insert(), [{"run_id": i, "epoch": e, "name": n, "value": float(10 * i + e)}
                                        for i in range(1, 4) for e in range(5) for n in ("top1", "train_loss")])
        conn.execute(finals.insert(), [{"run_id": i, "name": "top1", "value": 50.0 + i} for i in range(1, 4)])
        conn.execute(info.insert(), [{"run_id": 1, "key": "device", "value": "cpu"}])
        conn.execute(predictions.insert(), [{"run_id": 1, "name": "cls", "dtype": "<i2", "shape": [3],
                                             "data": np.array([1, 2, 3], dtype="<i2").tobytes()}])
        if conn.dialect.name == "postgresql":  # ids were given above: move the sequences past them
            for table in ("experiments", "runs"):
                conn.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), 10)"))
    engine.dispose()


def test_first_revision_store_is_refused_then_upgraded_with_every_row(store_url, planned):
    assert upgrade_store(store_url, FIRST) == (None, FIRST)
    _fill_first_revision(store_url)
    with pytest.raises(SchemaOutOfDate) as caught:
        open_store(store_url)
    message = str(caught.value)
    assert "harness db upgrade --db" in message and FIRST in message and head_revision() in message
    password = make_url(store_url).password
    assert not password or f":{password}@" not in message

    assert upgrade_store(store_url) == (FIRST, head_revision())
    assert upgrade_store(store_url) == (head_revision(), head_revision())  # again: nothing to do
    with open_store(store_url) as store:
        records = store.runs(spec="distillation")
        assert [r.hash for r in records] == [f"{i:064x}" for i in range(1, 4)]
        assert [r.status for r in records] == ["completed", "completed", "failed"]
        first = records[0]
        assert (first.variant, first.label, first.profile, first.seed, first.host, first.job_id) == (
            "v1", "V1", "quick", 1, "node1", "101")
        assert first.config == {"model": {"name": "m1"}, "seed": 1} and first.coords == {"model.name": "m1"}
        assert first.final == {"top1": 51.0} and first.info == {"device": "cpu"} and first.epoch == 4
        assert first.started_at == NOW and first.source is None and first.provenance == {}
        assert records[2].error == "boom"
        assert len(store.metrics()) == 30 and store.metrics([first.hash], ["top1"])[-1] == (first.hash, 4, "top1", 14.0)
        assert store.predictions(first.hash)["cls"].tolist() == [1, 2, 3]
        assert store.experiments()[0].spec_text == "name: distillation\n"
        # the upgraded store takes new writes
        assert store.claim(records[2].hash, TEST_OWNER)
        assert store.mark_started(records[2].hash, TEST_OWNER.token, "node2", {"git_commit": "abc"})
        assert store.get_run(records[2].hash).provenance == {"git_commit": "abc"}
        store.register_runs("distillation", planned(2))
        assert len(store.runs(spec="distillation")) == 5


def test_unknown_revision_asks_for_a_newer_harness(sqlite_url):
    with open_store(sqlite_url) as store, store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(StoreError, match="newer harness"):
        open_store(sqlite_url)


def test_a_database_that_is_not_a_store_is_refused(sqlite_url):
    engine = make_engine(parse_url(sqlite_url))
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE something (x INTEGER)"))
    engine.dispose()
    with pytest.raises(StoreError, match="not a harness results store"):
        open_store(sqlite_url)
    with pytest.raises(StoreError, match="not a harness results store"):
        upgrade_store(sqlite_url)


def test_runs_trained_with_the_old_dropout_are_marked_for_training_again(store_url):
    """Revision 0003: `model.dropout` changed meaning (reference placement instead of timm 1.x's head dropout)."""
    assert upgrade_store(store_url, "0002") == (None, "0002")
    engine = make_engine(parse_url(store_url))
    with engine.begin() as conn:
        conn.execute(runs.insert(), [
            {"id": i, "hash": f"{i:064x}", "config": {"model": {"name": "deit_tiny_patch4_32", "dropout": d}},
             "status": "completed", "created_at": NOW, "updated_at": NOW} for i, d in ((1, 0.1), (2, 0.0))])
    engine.dispose()
    upgrade_store(store_url)
    with open_store(store_url) as store:
        by_hash = {r.hash: r for r in store.runs()}
    assert by_hash[f"{1:064x}"].status == "failed" and "reference's dropout" in by_hash[f"{1:064x}"].error
    assert by_hash[f"{2:064x}"].status == "completed"
