"""A lab's own datasets, by name: `@harness.datasets.register("name")` on a builder makes `data.name: name`
valid in a spec, like the built-in datasets (harness/trainer/datasets.py).

A builder takes the run's `RunConfig` and returns the trainer's `DataSplits`, the same splits the built-in
datasets return. A spec lists the module that registers it under `imports:`; the harness imports it when it
validates the spec and in every job before building anything:

    # mylab/data.py
    import torch
    import harness.datasets
    from harness.trainer.datasets import DataSplits, InMemoryImages

    @harness.datasets.register("blobs")
    def blobs(config):
        g = torch.Generator().manual_seed(config.data.split_seed)
        size = config.data.img_size

        def split(n):  # uint8 images (N, 3, H, W) and int64 targets, augmented by the trainer a batch at a time
            targets = torch.randint(0, 4, (n,), generator=g)
            images = (targets * 60).view(n, 1, 1, 1).expand(n, 3, size, size).to(torch.uint8)
            return InMemoryImages(images.contiguous(), targets)

        return DataSplits(train=split(400), val=split(100), num_classes=4, in_memory=True)

A dataset that decodes files instead returns `torch.utils.data.Dataset`s of normalised tensors (for example
torchvision's `ImageFolder` with `harness.trainer.transforms`) and `in_memory=False`. This module imports
nothing heavy: the spec layer reads its names without torch.
"""

from __future__ import annotations

from typing import Any, Callable

# name -> builder(config) -> DataSplits, filled by `register`
REGISTERED: dict[str, Callable[[Any], Any]] = {}


def register(name: str) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
    """Register the decorated builder as dataset `name` (registering one name twice keeps the last builder, so
    that a module imported again, as a job does, is no error)."""
    def decorate(builder: Callable[[Any], Any]) -> Callable[[Any], Any]:
        REGISTERED[name] = builder
        return builder

    return decorate
