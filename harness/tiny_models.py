"""The harness's own tiny models for CPU-sized runs, as data: the one home of their names and shapes.

`harness.models` builds every entry and registers it in timm's model registry; `harness.registry` validates
model names against this table without importing torch or timm; `reports/models.yaml` files each of them
under the paper model it stands in for (a test checks that it names exactly these). Names follow timm's
`_patch` -> `_distilled_patch` twin rule (see `harness.registry.distilled_twin`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TinyViT:
    """A DeiT-style ViT for 32-pixel images (timm's VisionTransformer, or its distillation-token twin)."""

    embed_dim: int
    depth: int
    num_heads: int
    # pixels per patch side: 4 gives an 8x8 token grid at 32 px
    patch_size: int = 4
    # the distillation-token twin (timm's VisionTransformerDistilled)
    distilled: bool = False
    doc: str = ""


@dataclass(frozen=True)
class TinyConvNet:
    """Conv-BN-ReLU stages and a linear classifier: a fast teacher for 32-pixel images."""

    # channels of the stem and of each stride-2 stage
    widths: tuple[int, ...] = (32, 64, 128, 256)
    doc: str = ""


_TINY: dict[str, Any] = dict(embed_dim=192, depth=4, num_heads=3)
_SMALL: dict[str, Any] = dict(embed_dim=384, depth=6, num_heads=6)

TINY_MODELS: dict[str, TinyViT | TinyConvNet] = {
    "deit_tiny_patch4_32": TinyViT(**_TINY, doc="DeiT-Ti width (dim 192, 3 heads), patch 4, 4 blocks, 32 px."),
    "deit_tiny_distilled_patch4_32": TinyViT(**_TINY, distilled=True,
                                             doc="The distillation-token twin of deit_tiny_patch4_32."),
    "deit_small_patch4_32": TinyViT(**_SMALL, doc="DeiT-S width (dim 384, 6 heads), patch 4, 6 blocks, 32 px."),
    "deit_small_distilled_patch4_32": TinyViT(**_SMALL, distilled=True,
                                              doc="The distillation-token twin of deit_small_patch4_32."),
    "resnet_tiny_32": TinyConvNet(doc="A small convnet for 32-px images: ~98% on digits in about 20 s on 2 cores."),
}


def is_tiny_vit(name: str) -> bool:
    return isinstance(TINY_MODELS.get(name), TinyViT)
