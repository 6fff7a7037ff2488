"""The harness's tiny 32-px models (`harness.registry.MODELS`), built and registered in timm's model registry.

Importing this module registers every entry of `MODELS` under its name: the ViTs as timm's
`VisionTransformer` (or `VisionTransformerDistilled` for a distillation-token twin), the convnet as
`TinyConvNet`. Every model takes timm's usual keyword arguments (`num_classes`, `img_size`, the dropout and
drop-path rates), so the trainer builds them exactly as it builds timm's own.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.deit import VisionTransformerDistilled
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from harness.registry import MODELS, TinyConvNet as TinyConvNetSpec, TinyViT


def _cfg(spec: TinyViT | TinyConvNetSpec) -> dict[str, Any]:
    vit = isinstance(spec, TinyViT)
    distilled = isinstance(spec, TinyViT) and spec.distilled
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
        "first_conv": "patch_embed.proj" if vit else "stem.0",
        "classifier": ("head", "head_dist") if distilled else ("head" if vit else "fc"),
    }


# read by timm's register_model: each name's pretrained cfg (no weights: "url" is empty)
default_cfgs = generate_default_cfgs({name: _cfg(MODELS.get(name)) for name in MODELS})


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


def _build(name: str, spec: TinyViT | TinyConvNetSpec, pretrained: bool, kwargs: dict[str, Any]) -> nn.Module:
    kwargs.setdefault("num_classes", 10)
    if isinstance(spec, TinyConvNetSpec):
        # a convnet has no token grid and no stochastic depth: it takes these arguments and ignores them
        for unused in ("img_size", "drop_path_rate"):
            kwargs.pop(unused, None)
        return build_model_with_cfg(TinyConvNet, name, pretrained, widths=spec.widths, **kwargs)
    kwargs.setdefault("img_size", 32)
    arch = dict(patch_size=spec.patch_size, embed_dim=spec.embed_dim, depth=spec.depth, num_heads=spec.num_heads)
    model_cls = VisionTransformerDistilled if spec.distilled else VisionTransformer
    return build_model_with_cfg(model_cls, name, pretrained, **dict(arch, **kwargs))


def _entrypoint(name: str, spec: TinyViT | TinyConvNetSpec) -> Callable[..., nn.Module]:
    def create(pretrained: bool = False, **kwargs: Any) -> nn.Module:
        return _build(name, spec, pretrained, kwargs)

    # timm registers an entrypoint under its __name__ and files it under its __module__
    create.__name__ = create.__qualname__ = name
    create.__module__ = __name__
    create.__doc__ = spec.doc
    return create


for _name in MODELS:
    globals()[_name] = register_model(_entrypoint(_name, MODELS.get(_name)))
