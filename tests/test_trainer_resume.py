"""Checkpoints and failure: resume equality, NaN handling, fine-tuning at a higher resolution, EMA, clipping."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from timm.layers import resample_abs_pos_embed

from harness.trainer import TrainingDiverged, models, train
from harness.trainer.sink import MemorySink
from tests.test_trainer import make_config, run
from harness.trainer.loading import in_folders


class Interrupt(Exception):
    pass


class InterruptingSink(MemorySink):
    """Dies while logging epoch `at`, before that epoch's checkpoint is written (like a killed job)."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def log_epoch(self, epoch, metrics, checkpoint=None):
        if epoch == self.at:
            raise Interrupt
        super().log_epoch(epoch, metrics, checkpoint)


@pytest.mark.slow
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path):
    # the full stochastic recipe (repeated aug, RandAugment, Mixup/CutMix, erasing, drop path), fixed seed, CPU
    config = make_config(
        model={"name": "deit_tiny_patch4_32"}, schedule={"epochs": 3, "warmup_epochs": 1},
        augment={"repeated_aug": True}, data={"train_subset": 32}, ema={"enabled": True, "decay": 0.9},
        batch_size=16,
    )
    straight, _ = run(config, tmp_path / "straight")
    sink = InterruptingSink(at=2)
    with pytest.raises(Interrupt):
        train(config, tmp_path / "resumed", sink, lambda h: None)
    assert sorted(sink.epochs) == [0, 1]
    resumed, _ = run(config, tmp_path / "resumed")
    assert sorted(resumed.epochs) == [2]
    timing = {"train_img_s", "data_wait_s", "data_wait_frac"}
    assert {k: v for k, v in resumed.epochs[2].items() if k not in timing} == {
        k: v for k, v in straight.epochs[2].items() if k not in timing
    }
    a = torch.load(tmp_path / "straight" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    for name in ("top1", "top5", "val_loss", "train_loss", "ema_top1"):
        assert resumed.final[name] == straight.final[name]


def test_nan_loss_stops_the_run_with_the_reason(tmp_path):
    config = make_config(
        model={"name": "resnet_tiny_32", "drop_path": 0.0},
        optimizer={"name": "sgd", "base_lr": 1e12, "weight_decay": 0.0},
        augment={"mixup": 0.0, "cutmix": 0.0}, schedule={"epochs": 2, "warmup_epochs": 0, "warmup_lr": 1e10},
    )
    with pytest.raises(TrainingDiverged, match=r"loss is (nan|inf)"):
        run(config, tmp_path)
    assert not (tmp_path / "model.pt").exists()


@pytest.mark.slow
def test_finetune_at_higher_resolution_interpolates_position_embeddings(tmp_path):
    source = make_config(model={"name": "deit_tiny_patch4_32"})
    run(source, tmp_path / "src")
    state = torch.load(tmp_path / "src" / "model.pt", weights_only=True)
    config = make_config(model={"name": "deit_tiny_patch4_32"}, data={"img_size": 24}, finetune={"from_run": "src"})
    model = models.build_student(config, 10, in_folders(lambda h: tmp_path / h))
    expected = resample_abs_pos_embed(state["pos_embed"], [6, 6], num_prefix_tokens=1, interpolation="bicubic",
                                      antialias=False)
    assert state["pos_embed"].shape == (1, 17, 192) and model.pos_embed.shape == (1, 37, 192)
    assert torch.allclose(model.pos_embed, expected)
    assert torch.equal(model.cls_token, state["cls_token"])
    assert torch.allclose(model.blocks[0].attn.qkv.weight, state["blocks.0.attn.qkv.weight"])


@pytest.mark.slow
def test_distillation_while_finetuning_and_ema_and_clipping(tmp_path, monkeypatch):
    teacher = make_config(model={"name": "resnet_tiny_32", "drop_path": 0.0})
    run(teacher, tmp_path / "teacher")
    student = make_config(model={"name": "deit_tiny_patch4_32", "distillation_token": True})
    run(student, tmp_path / "student")
    calls = []
    clip = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda *a, **k: calls.append(k or a[1:]) or clip(*a, **k))
    config = make_config(
        model={"name": "deit_tiny_patch4_32", "distillation_token": True}, data={"img_size": 24},
        finetune={"from_run": "student"}, ema={"enabled": True},
        distillation={"kind": "hard", "teacher": {"model": "resnet_tiny_32", "run": "teacher"}},
        optimizer={"clip_grad": 1.0},
    )
    sink, final = run(config, tmp_path / "ft", {"teacher": tmp_path / "teacher", "student": tmp_path / "student"})
    assert {"ema_top1", "ema_top5", "top1_dist", "teacher_top1"} <= set(final)
    assert calls and (tmp_path / "ft" / "model_ema.pt").exists()
