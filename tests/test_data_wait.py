"""Where an epoch's time goes: the time the training loop waited for data, stored with each epoch's metrics
(`data_wait_s`, `data_wait_frac`) and shown by `harness status`, so a run starved by its loader says so."""

import os
import time

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from harness.trainer import distributed
from harness.trainer.loop import build_run, train_one_epoch
from tests.runstate import TEST_OWNER, drive
from tests.test_trainer import make_config, run

# each batch of the slow loader takes this long to arrive
DELAY_S = 0.2


class SlowLoader:
    """The run's own loader, each batch handed over `DELAY_S` late (a loader slower than the steps)."""

    def __init__(self, loader) -> None:
        self.loader = loader
        self.sampler = loader.sampler

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            time.sleep(DELAY_S)
            yield batch


@pytest.mark.slow
def test_a_slow_loader_shows_as_data_wait():
    config = make_config(model={"name": "deit_tiny_patch4_32"}, data={"train_subset": 96})
    r, _ = build_run(config, distributed.DistEnv(), lambda h: None, {})
    fast = train_one_epoch(r, 0)
    r.train_loader = SlowLoader(r.train_loader)
    slow = train_one_epoch(r, 1)
    batches = len(r.train_loader)
    assert batches == 3
    # every delay is waited for, and counted as waiting; the steps themselves are not
    assert slow.data_wait_s >= batches * DELAY_S
    assert slow.data_wait_s - fast.data_wait_s >= batches * DELAY_S * 0.9
    assert slow.data_wait_s <= slow.seconds and fast.data_wait_s <= fast.seconds


def test_each_epoch_records_its_data_wait(tmp_path):
    sink, final = run(make_config(model={"name": "deit_tiny_patch4_32"}, schedule={"epochs": 2}), tmp_path)
    for metrics in sink.epochs.values():
        assert 0.0 <= metrics["data_wait_s"]
        assert 0.0 <= metrics["data_wait_frac"] <= 1.0
        assert metrics["data_wait_frac"] * (96 / metrics["train_img_s"]) == pytest.approx(
            metrics["data_wait_s"], rel=1e-6)
    assert final["data_wait_frac"] == sink.epochs[1]["data_wait_frac"]


def test_status_shows_the_data_wait_of_training_and_finished_runs(sqlite_store, planned, capsys):
    from harness.cli.tables import status_table
    from harness.launch.status import statuses

    training, finished = planned(2)
    sqlite_store.register_experiment("ablation", "name: ablation\n", "ablation.yaml")
    sqlite_store.register_runs("ablation", [training, finished])
    for run_, frac in ((training, 0.42), (finished, 0.07)):
        drive(sqlite_store, run_.hash, "running")
        sqlite_store.log_epoch(run_.hash, 0, {"top1": 10.0, "train_img_s": 100.0, "data_wait_frac": 0.9})
        sqlite_store.log_epoch(run_.hash, 1, {"top1": 11.0, "train_img_s": 100.0, "data_wait_frac": frac})
        assert sqlite_store.heartbeat(run_.hash, TEST_OWNER.token, epoch=1)
    sqlite_store.log_final(finished.hash, {"top1": 11.0, "data_wait_frac": 0.07}, {})
    assert sqlite_store.finish(finished.hash, TEST_OWNER.token, "completed")
    rows = {r.hash: r for r in statuses(sqlite_store, "ablation")}
    assert rows[training.hash].data_wait_frac == 0.42
    assert rows[finished.hash].data_wait_frac == 0.07
    status_table(list(rows.values()))
    printed = capsys.readouterr().out
    assert "data wait" in printed and "42%" in printed and "7%" in printed
