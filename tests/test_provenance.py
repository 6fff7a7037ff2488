"""harness.provenance: what is recorded about the code and machine behind a run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness import provenance
from tests.runstate import drive


def test_collect_has_every_fact(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setattr(sys, "argv", ["harness", "run", "spec.yaml", "--db",
                                      "postgresql+psycopg://alice:hunter2@db.example:5432/results"])
    facts = provenance.collect()
    for key in ("git_commit", "git_dirty", "python", "torch", "timm", "harness", "host", "device", "slurm_job_id",
                "command"):
        assert key in facts
    assert facts["slurm_job_id"] == "4242"
    assert facts["python"] == ".".join(map(str, sys.version_info[:3]))
    assert facts["harness"] and facts["host"]
    assert "hunter2" not in facts["command"]
    assert "postgresql+psycopg://alice:***@db.example:5432/results" in facts["command"]


def test_git_state_of_a_checkout(tmp_path):
    provenance.git_state.cache_clear()
    assert provenance.git_state(tmp_path) == (None, None)  # not a checkout
    run = lambda *a: subprocess.run(["git", "-C", str(tmp_path), *a], check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    (tmp_path / "f.txt").write_text("a")
    run("add", "f.txt")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "x")
    provenance.git_state.cache_clear()
    commit, dirty = provenance.git_state(tmp_path)
    assert len(commit) == 40 and dirty is False
    (tmp_path / "f.txt").write_text("b")
    provenance.git_state.cache_clear()
    assert provenance.git_state(tmp_path) == (commit, True)
    provenance.git_state.cache_clear()


def test_mark_started_stores_provenance_without_secrets(sqlite_store, planned, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["harness", "run", "--db", "postgresql://bob:t0psecret@h/db"])
    run = planned(1)[0]
    sqlite_store.register_runs("ablation", [run])
    drive(sqlite_store, run.hash, "running", provenance=provenance.collect())
    record = sqlite_store.get_run(run.hash)
    assert record.provenance["command"] == "harness run --db postgresql://bob:***@h/db"
    assert record.provenance["git_commit"] == provenance.collect()["git_commit"]
    files = list(Path(sqlite_store.url.database).parent.glob("harness.db*"))  # the database and its WAL
    assert files and all(b"t0psecret" not in f.read_bytes() for f in files)
    assert any(b"bob:***@h" in f.read_bytes() for f in files)


def test_collect_records_the_data_order_version_and_torch_threads():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        facts = provenance.collect()
    finally:
        torch.set_num_threads(before)
    assert facts["torch_threads"] == 1
    # runs of the seed-and-epoch mixed orders (harness.trainer.loaders.epoch_seed) are version 2
    assert facts["data_order"] == provenance.DATA_ORDER == 2
