"""A lab's own model and dataset, registered by name the way a spec's `imports:` module does (tests only)."""

from __future__ import annotations

import torch
from timm.models import register_model
from torch import nn

from harness.registry import register_dataset
from harness.trainer.datasets import DataSplits, InMemoryImages


class LabMLP(nn.Module):
    """A two-layer perceptron over 32-px images: small enough to train in a second."""

    def __init__(self, num_classes: int = 10, hidden: int = 32, drop_rate: float = 0.0, **_: object) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, hidden), nn.ReLU(), nn.Dropout(drop_rate),
                                 nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@register_model
def lab_mlp_32(pretrained: bool = False, **kwargs: object) -> LabMLP:
    kwargs.pop("drop_path_rate", None)
    return LabMLP(**kwargs)  # type: ignore[arg-type]


@register_dataset("lab_stripes")
def lab_stripes(config):  # type: ignore[no-untyped-def]
    """Four classes of grey levels: class c is a flat image of brightness 60 c, plus seeded noise."""
    g = torch.Generator().manual_seed(config.data.split_seed)
    size = config.data.img_size

    def split(n: int) -> InMemoryImages:
        targets = torch.randint(0, 4, (n,), generator=g)
        noise = torch.randint(0, 20, (n, 1, size, size), generator=g)
        images = (targets.view(n, 1, 1, 1) * 60 + noise).clamp(0, 255).expand(n, 3, size, size)
        return InMemoryImages(images.to(torch.uint8).contiguous(), targets)

    return DataSplits(train=split(200), val=split(100), num_classes=4, in_memory=True)
