"""The networks of a run, by timm name: the student (or its distillation-token twin) and the teacher.

Which models take `img_size` is decided by family, not by trial: ViTs (timm's `vision_transformer` and `deit`
modules, and the harness's tiny ViTs) are built for the run's token grid; every other model (the convnets)
is resolution-agnostic and is built without it.

`model.dropout` means what the reference code's `--drop` meant (timm 0.3.2's `drop_rate`): for a ViT, dropout
after the position embedding, the attention projection and both MLP layers, and none before the head. timm
1.x's `drop_rate` is a dropout before the head only, so a ViT gets `pos_drop_rate` and `proj_drop_rate`
instead. A convnet gets timm's `drop_rate` (before its classifier; what it meant in timm 0.3.2 too). A teacher
is built without dropout and runs in eval mode, so dropout never touches it.

With `channels_last`, a convnet (the teacher, or a convnet student) keeps its weights in channels-last memory,
the layout GPU convolutions are fastest in (a convolution follows its weight's layout).

A teacher sees the student's batch at its own resolution when `distillation.teacher.img_size` says so (the
paper fine-tunes its ↑384 students with a teacher at 384): the batch is resized for it (`AtResolution`).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, cast

import timm
import torch
import torch.nn.functional as F
from torch import nn

import harness.trainer.tiny_models  # noqa: F401  (registers the tiny 32-px models in timm before any create_model)
from harness.config import RunConfig
from harness.registry import MODELS, check_model, distilled_twin, is_tiny_vit
from harness.trainer.loading import (
    RunFiles, adapt_state, check_classes, finetune_state, load_finetune_state, teacher_state,
)

# timm modules whose models are VisionTransformer or its distillation-token twin (vit_*, deit_*, deit3_*)
VIT_MODULES = ("vision_transformer", "deit")


@lru_cache(maxsize=1)
def _timm_vits() -> frozenset[str]:
    return frozenset(timm.list_models(module=VIT_MODULES))


def is_vit(name: str) -> bool:
    """Whether a model (a timm name, or a pretrained tag) is a ViT: it takes img_size and has a token grid."""
    arch = name.split(".", 1)[0]
    return is_tiny_vit(arch) if arch in MODELS else arch in _timm_vits()


def create_model(name: str, num_classes: int, img_size: int, dropout: float = 0.0,
                 drop_path: float = 0.0) -> nn.Module:
    """A freshly initialised timm model: a ViT built for `img_size`, any other model as timm defines it; dropout
    as the reference placed it (see the module docstring)."""
    check_model(name)
    kwargs: dict[str, Any] = dict(num_classes=num_classes, drop_path_rate=drop_path)
    if is_vit(name):
        kwargs.update(img_size=img_size, pos_drop_rate=dropout, proj_drop_rate=dropout, drop_rate=0.0)
    else:
        kwargs["drop_rate"] = dropout
    return timm.create_model(name, pretrained=False, **kwargs)


def in_memory_format(model: nn.Module, name: str, config: RunConfig) -> nn.Module:
    """A convnet in channels-last memory when `channels_last` asks for it (a ViT as it is: it has no convolution
    worth it)."""
    if config.channels_last and not is_vit(name):
        model = model.to(memory_format=torch.channels_last)
    return model


def student_name(config: RunConfig) -> str:
    name = config.model.name
    return distilled_twin(name) if config.model.distillation_token else check_model(name)


def is_distilled(model: nn.Module) -> bool:
    return hasattr(model, "head_dist") and hasattr(model, "set_distilled_training")


def build_student(config: RunConfig, num_classes: int, run_files: RunFiles,
                  info: dict[str, str] | None = None) -> nn.Module:
    """The student, fine-tuning weights loaded if the run fine-tunes; `info` receives where they came from."""
    model = create_model(student_name(config), num_classes, config.data.img_size,
                         dropout=config.model.dropout, drop_path=config.model.drop_path)
    if config.finetune is not None:
        weights = finetune_state(config.finetune, run_files)
        load_finetune_state(model, adapt_state(weights.state, model))
        if info is not None:
            info.update(weights.describe("finetune"))
    if is_distilled(model):
        cast(Any, model).set_distilled_training(True)  # a timm VisionTransformerDistilled (is_distilled)
    return in_memory_format(model, student_name(config), config)


class AtResolution(nn.Module):
    """A teacher that sees every batch resized to its own resolution (bicubic, antialiased when shrinking)."""

    def __init__(self, teacher: nn.Module, img_size: int) -> None:
        super().__init__()
        self.teacher = teacher
        self.img_size = img_size

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-2:] != (self.img_size, self.img_size):
            images = F.interpolate(images, size=(self.img_size, self.img_size), mode="bicubic",
                                   align_corners=False, antialias=True)
        return self.teacher(images)


def build_teacher(config: RunConfig, num_classes: int, run_files: RunFiles,
                  device: torch.device, info: dict[str, str] | None = None) -> nn.Module:
    """The teacher in eval mode and without gradients, at `teacher.img_size` (None: the student's resolution);
    `info` receives where its weights came from."""
    t = config.distillation.teacher
    assert t is not None  # the config refuses a distillation without a teacher
    weights = teacher_state(t, run_files)
    name = t.model
    if "dist_token" in weights.state and "_distilled_" not in name:
        name = distilled_twin(name)
    teacher = create_model(name, num_classes, t.img_size or config.data.img_size)
    check_classes(weights.state, teacher, weights.source)
    teacher.load_state_dict(adapt_state(weights.state, teacher))
    teacher = in_memory_format(teacher, name, config)
    if info is not None:
        info.update(weights.describe("teacher"))
    if t.img_size is not None:
        teacher = AtResolution(teacher, t.img_size)
    teacher.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher
