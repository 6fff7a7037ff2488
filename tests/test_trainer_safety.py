"""Run safety: checkpoint writes that fail cleanly, unreadable checkpoints set aside, stopping on request, and
one progress line per epoch."""

import errno
import os
import re

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from harness.trainer import CheckpointError, RunStopped, checkpoint, train
from harness.trainer.sink import MemorySink
from tests.test_trainer import make_config, run

CONVNET = {"name": "resnet_tiny_32", "drop_path": 0.0}


def test_a_full_disk_at_the_checkpoint_names_the_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    real_save = torch.save

    def full_disk(obj, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def save(obj, path, *args, **kwargs):
        return (full_disk if str(path).startswith(str(tmp_path / "checkpoint.pt")) else real_save)(obj, path)

    monkeypatch.setattr(checkpoint.torch, "save", save)
    with pytest.raises(CheckpointError) as raised:
        run(make_config(model=CONVNET), tmp_path)
    assert raised.value.errno == errno.ENOSPC
    assert str(tmp_path / "checkpoint.pt") in str(raised.value) and "No space left on device" in str(raised.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_temporary_files_are_unique_per_writer(tmp_path, monkeypatch):
    written = []
    monkeypatch.setattr(checkpoint.torch, "save", lambda obj, path: written.append(path) or open(path, "wb").close())
    checkpoint.save_atomic({}, tmp_path / "checkpoint.pt")
    checkpoint.save_atomic({}, tmp_path / "checkpoint.pt")
    assert len(set(written)) == 2 and all(f".tmp-{os.getpid()}-" in p.name for p in written)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


class StopAt(MemorySink):
    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.at = epoch

    def log_epoch(self, epoch, metrics, checkpoint=None):
        super().log_epoch(epoch, metrics, checkpoint)
        if epoch == self.at:
            raise KeyboardInterrupt


@pytest.mark.slow
def test_a_truncated_checkpoint_is_set_aside_and_the_run_restarts(tmp_path, capsys):
    config = make_config(model=CONVNET, schedule={"epochs": 2, "warmup_epochs": 0})
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path, StopAt(1), lambda h: None)  # epoch 0's checkpoint is written, epoch 1's is not
    ckpt = tmp_path / "checkpoint.pt"
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    capsys.readouterr()
    sink, _ = run(config, tmp_path)
    assert sorted(sink.epochs) == [0, 1]  # from scratch
    err = capsys.readouterr().err
    assert f"checkpoint {ckpt} is unreadable" in err and "restarts from scratch" in err
    aside = [p.name for p in tmp_path.glob("checkpoint.pt.corrupt-*")]
    assert len(aside) == 1 and re.fullmatch(r"checkpoint\.pt\.corrupt-\d{8}T\d{6}Z", aside[0])
    assert (tmp_path / "model.pt").exists()


def test_should_stop_is_asked_every_step_and_stops_with_its_reason(tmp_path):
    config = make_config(model=CONVNET, schedule={"epochs": 3, "warmup_epochs": 0})  # 96 images / 32: 3 steps
    calls = []

    def should_stop():
        calls.append(1)
        return "cancelled by the user" if len(calls) == 5 else None

    sink = MemorySink()
    with pytest.raises(RunStopped, match="cancelled by the user") as raised:
        train(config, tmp_path, sink, lambda h: None, should_stop=should_stop)
    assert raised.value.reason == "cancelled by the user"
    assert len(calls) == 5 and sorted(sink.epochs) == [0]  # stopped at epoch 1's second step
    assert (tmp_path / "checkpoint.pt").exists() and not (tmp_path / "model.pt").exists()


@pytest.mark.slow
def test_one_progress_line_per_epoch_on_stdout(tmp_path, capsys):
    config = make_config(model=CONVNET, schedule={"epochs": 2, "warmup_epochs": 0})
    run(config, tmp_path)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    pattern = r"epoch {} of 2  train_loss \d+\.\d{{4}}  top1 \d+\.\d\d  lr \d\.\d\de[-+]\d\d  \d+ img/s  \d+\.\d s  data wait \d+%"
    assert len(lines) == 2
    for n, line in enumerate(lines):  # epochs count from 0, as the store numbers them
        assert re.fullmatch(pattern.format(n), line), line
