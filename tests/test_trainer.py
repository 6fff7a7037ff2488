"""End-to-end runs of the trainer on a small digits subset: metrics, predictions, weights, teachers."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path

import numpy as np
import pytest
import torch

from harness.config import RunConfig
from harness.trainer import train
from harness.trainer.sink import MemorySink
from harness.trainer.loading import in_folders

# One intra-op thread: these runs are tiny, and on a shared 2-core machine torch's default of one thread per
# core spins against the other processes (measured: a 3-epoch test run took 40 s with 2 threads under load, 1 s
# with 1). Collection imports this module, so the setting holds for the session.
torch.set_num_threads(1)

FAST = {
    # 16 px (digits are 8x8): 16 tokens per image keeps every test run to a second or two on 2 cores
    "data": {"name": "digits", "img_size": 16, "num_workers": 0, "train_subset": 96},
    "schedule": {"epochs": 1, "warmup_epochs": 0},
    "augment": {"repeated_aug": False},
    "throughput": {"protocols": [], "batch_size": 8, "repeats": 1},
    "batch_size": 32,
    "eval_batch_size": 128,
    "device": "cpu",
}


def make_config(**sections) -> RunConfig:
    base = {k: dict(v) if isinstance(v, dict) else v for k, v in FAST.items()}
    for key, value in sections.items():
        if isinstance(value, dict):
            base.setdefault(key, {}).update(value)
        else:
            base[key] = value
    return RunConfig.model_validate(base)


def run(config: RunConfig, run_dir: Path, runs: dict | None = None):
    sink = MemorySink()
    final = train(config, run_dir, sink, in_folders(lambda h: (runs or {})[h]))
    return sink, final


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("teacher")
    run(make_config(model={"name": "resnet_tiny_32", "drop_path": 0.0}), d)
    return d


@pytest.mark.slow
def test_plain_run_records_everything(tmp_path):
    config = make_config(model={"name": "deit_tiny_patch4_32"}, schedule={"epochs": 2},
                         throughput={"protocols": ["paper"]})
    sink, final = run(config, tmp_path)
    assert sorted(sink.epochs) == [0, 1]
    assert {"train_loss", "lr", "val_loss", "top1", "top5"} <= set(sink.epochs[1])
    for name in ("params", "flops", "train_time_s", "train_img_s", "throughput_paper_img_s", "peak_mem_mb", "top1"):
        assert final[name] == sink.final[name] and np.isfinite(final[name]), name
    assert final["params"] == pytest.approx(1.8e6, rel=0.05)
    assert {"device", "throughput_batch", "throughput_dtype_paper"} <= set(sink.info)
    assert set(sink.predictions) == {"target", "cls"}
    # plain integers: the store alone decides how to keep them compactly
    assert sink.predictions["cls"].dtype == np.int64 and sink.predictions["cls"].shape == (360,)
    assert (tmp_path / "model.pt").exists() and (tmp_path / "checkpoint.pt").exists()
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert "pos_embed" in state


@pytest.mark.slow
def test_finished_run_started_again_trains_nothing(tmp_path):
    config = make_config(model={"name": "resnet_tiny_32", "drop_path": 0.0})
    first, _ = run(config, tmp_path)
    again, final = run(config, tmp_path)
    assert again.epochs == {}
    assert final["top1"] == first.final["top1"]


@pytest.mark.slow
def test_distilled_student_with_a_teacher_run(tmp_path, teacher_dir):
    config = make_config(
        model={"name": "deit_tiny_patch4_32", "distillation_token": True},
        distillation={"kind": "hard", "alpha": 0.5, "teacher": {"model": "resnet_tiny_32", "run": "abc"}},
    )
    sink, final = run(config, tmp_path, {"abc": teacher_dir})
    metrics = sink.epochs[0]
    for name in ("top1_cls", "top5_cls", "top1_dist", "top5_dist"):
        assert name in metrics
    assert set(sink.predictions) == {"target", "cls", "dist", "avg", "teacher"}
    assert "teacher_top1" in final and 0 <= final["teacher_top1"] <= 100
    # a filter knows every final metric the trainer records before any run has it (harness/store/where.py)
    from harness.store.where import FINAL_METRICS

    assert set(sink.final) <= set(FINAL_METRICS), set(sink.final) - set(FINAL_METRICS)
    avg = sink.predictions["avg"] == sink.predictions["target"]
    assert metrics["top1"] == pytest.approx(avg.mean() * 100)


@pytest.mark.slow
def test_teacher_from_checkpoint_file_and_soft_distillation(tmp_path, teacher_dir):
    config = make_config(
        model={"name": "deit_tiny_patch4_32"},
        distillation={"kind": "soft", "alpha": 0.1, "tau": 3.0,
                      "teacher": {"model": "resnet_tiny_32", "checkpoint": str(teacher_dir / "checkpoint.pt")}},
    )
    sink, final = run(config, tmp_path)
    assert "teacher" in sink.predictions and np.isfinite(final["top1"])


def test_imagefolder_run(tmp_path):
    from tests.test_data import make_imagefolder

    root = make_imagefolder(tmp_path / "data", per_class=8)
    config = make_config(model={"name": "resnet_tiny_32", "drop_path": 0.0}, batch_size=8,
                         data={"name": "imagefolder", "root": str(root), "train_subset": None})
    sink, final = run(config, tmp_path / "run")
    assert sink.predictions["target"].shape == (16,) and np.isfinite(final["top1"])
