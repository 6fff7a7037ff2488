"""Tiny 32-pixel models for CPU-sized ablations, registered in timm's model registry.

Importing this module registers:

- `deit_tiny_patch4_32` / `deit_tiny_distilled_patch4_32`: a DeiT-Ti-width ViT (dim 192, 3 heads) with patch 4
  and 4 blocks, and its distillation-token twin (timm's `VisionTransformerDistilled`);
- `deit_small_patch4_32` / `deit_small_distilled_patch4_32`: the same at DeiT-S width (dim 384, 6 heads), 6 blocks;
- `resnet_tiny_32`: a small conv-bn-relu network, a fast teacher for 32-pixel images.

Names follow timm's `_patch` -> `_distilled_patch` twin rule (see `harness.registry.distilled_twin`), and
every model takes timm's usual keyword arguments (`num_classes`, `drop_rate`, `drop_path_rate`, `img_size`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.deit import VisionTransformerDistilled
from timm.models.vision_transformer import VisionTransformer


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {
        "url": "",
        "num_classes": 10,
        "input_size": (3, 32, 32),
        "pool_size": None,
        "crop_pct": 1.0,
        "interpolation": "bicubic",
        "fixed_input_size": False,
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": "patch_embed.proj",
        "classifier": "head",
        **kwargs,
    }


default_cfgs = generate_default_cfgs(
    {
        "deit_tiny_patch4_32": _cfg(),
        "deit_tiny_distilled_patch4_32": _cfg(classifier=("head", "head_dist")),
        "deit_small_patch4_32": _cfg(),
        "deit_small_distilled_patch4_32": _cfg(classifier=("head", "head_dist")),
        "resnet_tiny_32": _cfg(first_conv="stem.0", classifier="fc", fixed_input_size=False),
    }
)


def _create_vit(variant: str, distilled: bool, pretrained: bool, **kwargs: Any) -> nn.Module:
    kwargs.setdefault("img_size", 32)
    kwargs.setdefault("num_classes", 10)
    model_cls = VisionTransformerDistilled if distilled else VisionTransformer
    return build_model_with_cfg(model_cls, variant, pretrained, **kwargs)


_TINY = dict(patch_size=4, embed_dim=192, depth=4, num_heads=3)
_SMALL = dict(patch_size=4, embed_dim=384, depth=6, num_heads=6)


@register_model
def deit_tiny_patch4_32(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """DeiT-Ti width, patch 4, 4 blocks, for 32-pixel images."""
    return _create_vit("deit_tiny_patch4_32", False, pretrained, **dict(_TINY, **kwargs))


@register_model
def deit_tiny_distilled_patch4_32(pretrained: bool = False, **kwargs: Any) -> VisionTransformerDistilled:
    """The distillation-token twin of `deit_tiny_patch4_32`."""
    return _create_vit("deit_tiny_distilled_patch4_32", True, pretrained, **dict(_TINY, **kwargs))


@register_model
def deit_small_patch4_32(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """DeiT-S width, patch 4, 6 blocks, for 32-pixel images."""
    return _create_vit("deit_small_patch4_32", False, pretrained, **dict(_SMALL, **kwargs))


@register_model
def deit_small_distilled_patch4_32(pretrained: bool = False, **kwargs: Any) -> VisionTransformerDistilled:
    """The distillation-token twin of `deit_small_patch4_32`."""
    return _create_vit("deit_small_distilled_patch4_32", True, pretrained, **dict(_SMALL, **kwargs))


def _conv_bn_relu(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class TinyConvNet(nn.Module):
    """Conv-BN-ReLU stages (32 -> 16 -> 8 -> 4 px), global average pooling, a linear classifier."""

    def __init__(
        self, num_classes: int = 10, in_chans: int = 3, widths: tuple[int, ...] = (32, 64, 128, 256),
        drop_rate: float = 0.0, **_: Any,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.stem = _conv_bn_relu(in_chans, widths[0], 1)
        stages = []
        for cin, cout in zip(widths[:-1], widths[1:]):
            stages += [_conv_bn_relu(cin, cout, 2), _conv_bn_relu(cout, cout, 1)]
        self.stages = nn.Sequential(*stages)
        self.num_features = widths[-1]
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(x.mean((2, 3)))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model
def resnet_tiny_32(pretrained: bool = False, **kwargs: Any) -> TinyConvNet:
    """A small convnet for 32-pixel images: a fast teacher (~98% on digits in about 20 s on 2 CPU cores)."""
    for unused in ("img_size", "drop_path_rate"):
        kwargs.pop(unused, None)
    kwargs.setdefault("num_classes", 10)
    return build_model_with_cfg(TinyConvNet, "resnet_tiny_32", pretrained, **kwargs)
