"""Each switch of the DeiT recipe (Table 9) and each Table 8 preset changes what it should."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import math

import pytest
import torch
from timm.data.auto_augment import AutoAugment, RandAugment
from timm.layers import DropPath
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.data.random_erasing import RandomErasing
from torchvision.transforms import ColorJitter

from harness.config import RunConfig
from harness.registry import PRESETS
from harness.spec.overrides import apply
from harness.trainer import models, optim
from harness.trainer.batching import BatchTransform
from harness.trainer.datasets import build_dataset
from harness.trainer.loaders import SeededRepeatAugSampler, build_train_sampler
from harness.trainer.transforms import imagefolder_train_transform

DIGITS = {"data": {"name": "digits", "img_size": 32, "num_workers": 0}, "model": {"name": "deit_tiny_patch4_32"}}


def with_presets(*names: str, **extra) -> RunConfig:
    raw = RunConfig.model_validate(DIGITS).as_json()
    for name in names:
        raw = apply(raw, PRESETS[name])
    return RunConfig.model_validate(apply(raw, extra))


BASE = with_presets()


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_changes_the_resolved_config(name):
    assert with_presets(name) != BASE
    for key, value in PRESETS[name].items():
        node = with_presets(name).as_json()
        for part in key.split("."):
            node = node[part]
        assert node == value


def secondary_types(config):
    tf = BatchTransform(config, training=True)
    return [type(t) for t in tf.secondary.transforms] if tf.secondary is not None else []


def test_auto_augment_switch():
    assert secondary_types(BASE) == [RandAugment]
    assert secondary_types(with_presets("autoaug")) == [AutoAugment]
    # without RandAugment timm falls back to colour jitter (0.3), as the reference recipe does
    assert secondary_types(with_presets("no_randaug")) == [ColorJitter]
    assert secondary_types(with_presets("no_randaug", **{"augment.color_jitter": 0.0})) == []


def test_random_erasing_switch_in_both_pipelines():
    assert isinstance(BatchTransform(BASE, training=True).random_erasing, RandomErasing)
    assert BatchTransform(with_presets("no_erasing"), training=True).random_erasing is None
    folder = [type(t) for t in imagefolder_train_transform(BASE).transforms]
    assert RandomErasing in folder and RandAugment in folder
    folder = [type(t) for t in imagefolder_train_transform(with_presets("no_erasing", "no_randaug")).transforms]
    assert RandomErasing not in folder and RandAugment not in folder


def test_mixup_cutmix_switches_and_the_loss_that_follows():
    m = optim.build_mixup(BASE, 10)
    assert (m.mixup_alpha, m.cutmix_alpha, m.switch_prob) == (0.8, 1.0, 0.5)
    assert optim.build_mixup(with_presets("no_mixup"), 10).mixup_alpha == 0.0
    assert optim.build_mixup(with_presets("no_cutmix"), 10).cutmix_alpha == 0.0
    assert optim.build_mixup(with_presets("no_mixup_cutmix"), 10) is None
    assert isinstance(optim.build_criterion(BASE, m, None).base_criterion, SoftTargetCrossEntropy)
    plain = optim.build_criterion(with_presets("no_mixup_cutmix"), None, None).base_criterion
    assert isinstance(plain, LabelSmoothingCrossEntropy) and plain.smoothing == 0.1


def test_repeated_augmentation_sampler_also_in_one_process():
    splits = build_dataset(with_presets(**{"data.train_subset": 40}))
    sampler = build_train_sampler(BASE, splits.train)
    assert isinstance(sampler, SeededRepeatAugSampler)
    sampler.set_epoch(0)
    order = list(sampler)
    assert len(order) == 40 and order[0] == order[1] == order[2]
    plain = build_train_sampler(with_presets("no_repeated_aug"), splits.train)
    assert not isinstance(plain, SeededRepeatAugSampler)
    plain.set_epoch(0)
    assert sorted(plain) == list(range(40))


def test_stochastic_depth():
    model = models.build_student(BASE, 10, None)
    assert isinstance(model.blocks[-1].drop_path1, DropPath) and model.blocks[-1].drop_path1.drop_prob == pytest.approx(0.1)
    model = models.build_student(with_presets("no_stoch_depth"), 10, None)
    assert isinstance(model.blocks[-1].drop_path1, torch.nn.Identity)


def dropout_rates(model) -> dict[str, set[float]]:
    blocks = list(model.blocks)
    return {
        "pos": {model.pos_drop.p},
        "attn_proj": {b.attn.proj_drop.p for b in blocks},
        "mlp": {b.mlp.drop1.p for b in blocks} | {b.mlp.drop2.p for b in blocks},
        "attn_weights": {b.attn.attn_drop.p for b in blocks},
        "head": {model.head_drop.p},
    }


@pytest.mark.parametrize("name,distilled", [
    ("deit_tiny_patch16_224", False), ("deit_tiny_patch16_224", True),
    ("deit_tiny_patch4_32", False), ("deit_small_patch4_32", True),
])
def test_dropout_is_the_reference_codes(name, distilled):
    """Table 8's "Dropout" row: timm 0.3.2's drop_rate put dropout after the position embedding, the attention
    projection and both MLP layers, and none before the head (timm 1.x's drop_rate is head dropout only)."""
    extra = {"model.name": name, "model.distillation_token": distilled, "data.img_size": 32}
    rates = dropout_rates(models.build_student(with_presets("dropout", **extra), 10, None))
    assert rates == {"pos": {0.1}, "attn_proj": {0.1}, "mlp": {0.1}, "attn_weights": {0.0}, "head": {0.0}}
    rates = dropout_rates(models.build_student(with_presets(**extra), 10, None))
    assert all(r == {0.0} for r in rates.values())


def test_dropout_of_a_convnet_is_before_its_classifier():
    config = with_presets("dropout", **{"model.name": "resnet_tiny_32", "model.drop_path": 0.0})
    assert models.build_student(config, 10, None).drop.p == 0.1


def test_optimizers_and_learning_rate_scaling():
    model = models.build_student(BASE, 10, None)
    adamw = optim.build_optimizer(BASE, model)
    assert isinstance(adamw, torch.optim.AdamW)
    assert adamw.param_groups[0]["lr"] == pytest.approx(5e-4 * 1024 / 512)
    decays = sorted({g["weight_decay"] for g in adamw.param_groups})
    assert decays == [0.0, 0.05]  # no weight decay on biases, norms, tokens and position embeddings
    sgd = optim.build_optimizer(with_presets("sgd_pretrain"), model)
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["momentum"] == 0.9
    assert sgd.param_groups[0]["lr"] == pytest.approx(0.05 * 1024 / 512)


def test_cosine_schedule_with_warmup():
    config = with_presets(**{"schedule.epochs": 10, "schedule.warmup_epochs": 2, "batch_size": 512})
    opt = optim.build_optimizer(config, models.build_student(config, 10, None))
    sched = optim.build_scheduler(config, opt)
    lrs = []
    for epoch in range(10):
        sched.step(epoch)
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(1e-6)
    # timm's cosine runs from epoch 0, the warm-up overlapping its start (the reference's warmup_prefix=False)
    assert lrs[2] == pytest.approx(1e-5 + 0.5 * (5e-4 - 1e-5) * (1 + math.cos(math.pi * 2 / 10)))
    assert lrs[2] > lrs[5] > lrs[9] > 1e-5
