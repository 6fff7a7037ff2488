"""Optimisation of the DeiT recipe (Table 9): AdamW or SGD, timm's cosine schedule with warm-up, Mixup/CutMix,
and the loss (label smoothing or soft targets, wrapped in the distillation loss)."""

from __future__ import annotations

from typing import Any

import torch
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from torch import nn

from harness.config import RunConfig
from harness.trainer.distillation import DistillationLoss


def scaled_lr(config: RunConfig) -> float:
    return config.optimizer.base_lr * config.batch_size / 512


def fused_supported(device: torch.device) -> bool:
    """Whether torch has fused optimizer kernels for this device type."""
    from torch.optim.optimizer import _get_fused_kernels_supported_devices

    return device.type in _get_fused_kernels_supported_devices()


def build_optimizer(config: RunConfig, model: nn.Module) -> torch.optim.Optimizer:
    """timm's optimizer factory (no weight decay on biases, norms and tokens, as the reference); torch's fused
    kernel when `optimizer.fused` asks for it and the model's device has one."""
    o = config.optimizer
    kwargs: dict[str, Any] = dict(lr=scaled_lr(config), weight_decay=o.weight_decay)
    if o.fused and fused_supported(next(model.parameters()).device):
        kwargs["fused"] = True
    if o.name == "adamw":
        kwargs["eps"] = o.eps
    else:
        kwargs["momentum"] = o.momentum
    return create_optimizer_v2(model, opt=o.name, **kwargs)


def build_scheduler(config: RunConfig, optimizer: torch.optim.Optimizer) -> CosineLRScheduler:
    s = config.schedule
    return CosineLRScheduler(
        optimizer, t_initial=s.epochs, lr_min=s.min_lr, warmup_lr_init=s.warmup_lr, warmup_t=s.warmup_epochs,
        cycle_limit=1, t_in_epochs=True,
    )


def build_mixup(config: RunConfig, num_classes: int) -> Mixup | None:
    a = config.augment
    if (a.mixup <= 0 and a.cutmix <= 0) or a.mixup_prob <= 0:
        return None
    return Mixup(
        mixup_alpha=a.mixup, cutmix_alpha=a.cutmix, prob=a.mixup_prob, switch_prob=a.mixup_switch_prob,
        mode="batch", label_smoothing=a.label_smoothing, num_classes=num_classes,
    )


def build_criterion(config: RunConfig, mixup: Mixup | None, teacher: nn.Module | None) -> DistillationLoss:
    if mixup is not None:
        base: nn.Module = SoftTargetCrossEntropy()  # Mixup already smooths the labels
    elif config.augment.label_smoothing > 0:
        base = LabelSmoothingCrossEntropy(smoothing=config.augment.label_smoothing)
    else:
        base = nn.CrossEntropyLoss()
    d = config.distillation
    return DistillationLoss(base, teacher, d.kind, d.alpha, d.tau)
