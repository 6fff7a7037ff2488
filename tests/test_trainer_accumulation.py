"""Gradient accumulation (harness.trainer.accumulation): one optimizer step over 4 micro-batches of 64 is one
step over the batch of 256; and the config key that asks for it."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from harness.config import RunConfig, run_hash
from harness.trainer import accumulation
from harness.trainer.distributed import DistEnv
from harness.trainer.loop import assemble, train_step
from harness.trainer.models import build_student, create_model
from tests.test_trainer import make_config

CLASSES = 10


def one_step(steps: int, distillation: str = "none", **sections):
    """The weights and EMA after one training step over the same 256 images, in `steps` micro-batches."""
    teacher_config = {"model": "resnet_tiny_32", "checkpoint": "given below"} if distillation != "none" else None
    config = make_config(model={"name": "deit_tiny_patch4_32", "drop_path": 0.0, "dropout": 0.0},
                         batch_size=256, accumulation_steps=steps, ema={"enabled": True, "decay": 0.5},
                         optimizer={"clip_grad": 1.0}, distillation={"kind": distillation, "teacher": teacher_config},
                         **sections)
    torch.manual_seed(0)
    model = build_student(config, CLASSES, lambda h: None)
    teacher = create_model("resnet_tiny_32", CLASSES, 16).eval().requires_grad_(False) if teacher_config else None
    run = assemble(config, DistEnv(), torch.device("cpu"), model, teacher, CLASSES)
    run.scheduler.step(0)
    run.train_model.train()
    images = torch.randn(256, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    targets = torch.randint(0, CLASSES, (256,), generator=torch.Generator().manual_seed(2))
    np.random.seed(3)  # timm's Mixup draws its lambda and its choice of CutMix from numpy
    loss = train_step(run, images, targets)
    assert run.accumulation == steps
    return loss, model.state_dict(), run.ema.module.state_dict()


@pytest.mark.parametrize("augment, distillation", [
    ({"mixup": 0.0, "cutmix": 0.0}, "none"),
    # Mixup/CutMix on: the whole batch is mixed once before it is sliced, so the draw and the pairs are equal
    ({"mixup": 0.8, "cutmix": 1.0, "mixup_switch_prob": 0.5}, "none"),
    # and the distillation loss, soft (a mean over the slice's logits) and hard, with a convnet teacher
    ({"mixup": 0.8, "cutmix": 1.0}, "soft"),
    ({"mixup": 0.8, "cutmix": 1.0}, "hard"),
])
def test_four_micro_batches_of_64_are_one_batch_of_256(augment, distillation):
    loss1, weights1, ema1 = one_step(1, distillation, augment=augment)
    loss4, weights4, ema4 = one_step(4, distillation, augment=augment)
    assert torch.allclose(loss1, loss4, rtol=1e-5, atol=1e-6)
    moved = 0
    for name in weights1:
        assert torch.allclose(weights1[name], weights4[name], rtol=1e-4, atol=1e-6), name
        assert torch.allclose(ema1[name], ema4[name], rtol=1e-4, atol=1e-6), name
    # and the step did something: the weights left the initial ones (the ema sits halfway)
    torch.manual_seed(0)
    initial = build_student(make_config(model={"name": "deit_tiny_patch4_32"}), CLASSES, lambda h: None).state_dict()
    moved = sum(not torch.allclose(initial[n], weights1[n]) for n in weights1)
    assert moved > len(weights1) // 2


def test_slices_weigh_each_micro_batch_by_its_share():
    images, targets = torch.arange(10.0).view(10, 1), torch.arange(10)
    parts = list(accumulation.slices(images, targets, 3))
    assert [len(x) for x, _, _ in parts] == [4, 3, 3]
    assert sum(w for _, _, w in parts) == pytest.approx(1.0)


def test_auto_chooses_the_largest_slice_that_fits():
    assert accumulation.divisors(12) == [12, 6, 4, 3, 2, 1]
    # a device that holds 5 images at once: the largest divisor of 12 that fits is 4, so 3 steps
    assert accumulation.choose(12, lambda micro: micro <= 5) == 3
    assert accumulation.choose(256, lambda micro: micro <= 64) == 4
    with pytest.raises(RuntimeError, match="not even one image"):
        accumulation.choose(8, lambda micro: False)


def test_accumulation_key_leaves_old_hashes_alone_and_checks_the_batch():
    plain = RunConfig()
    assert "accumulation_steps" not in plain.as_json()
    assert run_hash(plain) == run_hash(RunConfig(accumulation_steps=1))
    assert run_hash(RunConfig(accumulation_steps=4)) != run_hash(plain)
    assert RunConfig(accumulation_steps="auto").as_json()["accumulation_steps"] == "auto"
    with pytest.raises(ValidationError, match=r"not divisible by (processes|gpus) x accumulation_steps \(1 x 3\)"):
        RunConfig(batch_size=1024, accumulation_steps=3)
    with pytest.raises(ValidationError, match="accumulation_steps 0"):
        RunConfig(accumulation_steps=0)


def test_the_probe_leaves_the_run_as_it_found_it(monkeypatch):
    """The `auto` probe (run on a GPU; here on a CPU, out of memory faked above 6 images): it tells what fits,
    and leaves no gradient, no random draw and no batch-norm statistic of its random images behind."""
    config = make_config(model={"name": "resnet_tiny_32", "drop_path": 0.0}, batch_size=32)
    torch.manual_seed(0)
    model = build_student(config, CLASSES, lambda h: None)
    run = assemble(config, DistEnv(), torch.device("cpu"), model, None, CLASSES)
    forward = model.forward

    def small_card(x):
        if len(x) > 6:
            raise torch.cuda.OutOfMemoryError("out of memory (test)")
        return forward(x)

    monkeypatch.setattr(model, "forward", small_card)
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    rng = torch.get_rng_state()
    fits = accumulation.probe(run, CLASSES, 16)
    assert accumulation.choose(32, fits) == 8  # slices of 4: the largest divisor of 32 that fits in 6
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(v, buffers[k]) for k, v in model.named_buffers())
    assert all(p.grad is None for p in model.parameters())
