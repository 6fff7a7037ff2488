"""CSV import rules: which column becomes what."""

from __future__ import annotations

import pytest

from harness.store import StoreError
from harness.store.importer import import_csv, read_csv


def write(tmp_path, text):
    path = tmp_path / "in.csv"
    path.write_text(text)
    return path


def test_columns_become_config_coords_metrics_and_info(tmp_path):
    path = write(tmp_path, "variant,profile,seed,config.batch_size,config.ema.enabled,model.name,metric.top1,"
                           "top5,note,info.device\n"
                           "b,paper,3,1024,true,deit_base_patch16_224,81.8,95.6,from Table 1,V100\n"
                           "b2,,,512,false,deit_small_patch16_224,79.9,—,,\n")
    groups = read_csv(path, "paper", spec="model_size")
    assert list(groups) == ["model_size"]
    first, second = groups["model_size"]
    assert first.config == {"batch_size": 1024, "ema": {"enabled": True}, "model": {"name": "deit_base_patch16_224"}}
    assert first.coords == {"model.name": "deit_base_patch16_224"}
    assert first.final == {"top1": 81.8, "top5": 95.6}
    assert first.info == {"note": "from Table 1", "device": "V100"}
    assert (first.profile, first.seed, first.label, first.status, first.source) == ("paper", 3, "b", "completed",
                                                                                   "paper")
    assert (second.profile, second.seed, second.final) == (None, 0, {"top1": 79.9})
    assert first.hash != second.hash and len(first.hash) == 64
    assert read_csv(path, "paper", spec="model_size")["model_size"][0].hash == first.hash
    assert read_csv(path, "other", spec="model_size")["model_size"][0].hash != first.hash


def test_import_is_idempotent_and_a_changed_row_is_a_new_run(sqlite_store, tmp_path):
    path = write(tmp_path, "spec,variant,top1\na,x,1.0\nb,y,2.0\n")
    summary = import_csv(sqlite_store, path, "lab")
    assert (summary.rows, summary.new, summary.experiments) == (2, 2, ("a", "b"))
    assert import_csv(sqlite_store, path, "lab").new == 0
    write(tmp_path, "spec,variant,top1\na,x,1.5\n")
    assert import_csv(sqlite_store, path, "lab").new == 1
    assert sorted(r.final["top1"] for r in sqlite_store.runs(spec="a")) == [1.0, 1.5]
    assert {r.source for r in sqlite_store.runs()} == {"lab"}


@pytest.mark.parametrize("text, message", [
    ("spec,variant,seed\na,x,one\n", "column seed"),
    ("spec,variant\n,x\n", "must not be empty"),
    ("spec,variant,config.a,config.a.b\ns,x,1,2\n", "not a mapping"),
])
def test_bad_rows_name_the_row(tmp_path, text, message):
    with pytest.raises(StoreError, match=message):
        read_csv(write(tmp_path, text), "lab")


def test_a_source_is_required(tmp_path):
    with pytest.raises(StoreError, match="source"):
        read_csv(write(tmp_path, "spec,variant\na,x\n"), " ")
