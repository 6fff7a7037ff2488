"""In-memory datasets augmented a batch at a time: `BatchTransform` and the loader that applies it.

The same transforms as timm's image pipeline (`harness.trainer.transforms`), computed on a batch of tensors, so
an image exported to an image folder comes out of either path with the same pixels (to one grey level):
timm's random-resized crop (its own box draw, from Python's `random`), torchvision's horizontal flip (one
`torch.rand(1)` per image) and the evaluation resize to `floor(size / crop_pct)` then centre crop, each resampled
with Pillow's weights and rounding (`harness.trainer.resampling`). Only timm's auto-augment policy
(RandAugment/AutoAugment, PIL-based) or colour jitter touches each image, on a small PIL image, which costs a
fraction of a training step; normalisation and random erasing are batched.
"""

from __future__ import annotations

import math
from typing import Callable, Iterator

import numpy as np
import torch
from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.data.random_erasing import RandomErasing
from timm.data.transforms import RandomResizedCropAndInterpolation

from harness.config import RunConfig
from harness.trainer.datasets import InMemoryImages
from harness.trainer.resampling import box_weights, resample, resample_weights
from harness.trainer.transforms import per_image_train_transform


def eval_weights(length: int, size: int, crop_pct: float, mode: str) -> np.ndarray:
    """(size, length) weights of timm's evaluation transform along one axis of a square image: torchvision's
    `Resize(floor(size / crop_pct))`, then `CenterCrop(size)` (its top is `round((scaled - size) / 2)`)."""
    scaled = math.floor(size / crop_pct)
    top = int(round((scaled - size) / 2.0))
    return resample_weights(length, scaled, mode)[top : top + size]


class BatchTransform:
    """The training (or evaluation) transform of an in-memory dataset, applied to a uint8 batch (N, 3, H, W).

    timm's `create_transform(is_training=True)` in the same order and with the same random draws per image:
    random-resized crop and horizontal flip (resampled batched), auto-augment or colour jitter (timm's own
    per-image PIL ops, `secondary`), normalisation and random erasing (batched). Evaluation: timm's resize
    to `floor(size / crop_pct)` and centre crop of `size`.
    """

    def __init__(self, config: RunConfig, training: bool, device: torch.device | str = "cpu") -> None:
        self.training = training
        self.device = torch.device(device)
        self.size = config.data.img_size
        self.interpolation = config.augment.interpolation
        self.crop_pct = config.data.crop_pct
        self.mean = torch.tensor(IMAGENET_DEFAULT_MEAN).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(IMAGENET_DEFAULT_STD).view(1, 3, 1, 1) * 255
        self.secondary: Callable | None = None
        self.random_erasing: RandomErasing | None = None
        if training:
            a = config.augment
            self.scale = (a.crop_scale_min, 1.0)
            self.ratio = (3.0 / 4.0, 4.0 / 3.0)
            self.hflip = a.hflip
            self.secondary = per_image_train_transform(config)
            if a.random_erasing > 0:
                self.random_erasing = RandomErasing(a.random_erasing, mode="pixel", max_count=1, device=self.device)

    def __repr__(self) -> str:
        if not self.training:
            return f"BatchTransform(eval, size={self.size}, crop_pct={self.crop_pct})"
        return (
            f"BatchTransform(train, size={self.size}, scale={self.scale}, hflip={self.hflip}, "
            f"secondary={self.secondary}, random_erasing={self.random_erasing})"
        )

    def _train_weights(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per image, timm's crop box (Python's `random`) and torchvision's flip (`torch.rand(1)`, drawn only
        when flips are on, as timm adds the flip only then), as row and column weights on the device."""
        n, _, h, w = images.shape
        # timm reads only the image's size: a blank PIL image of that size is the cheapest to ask
        blank = Image.new("L", (w, h))
        boxes, flips = [], []
        for _ in range(n):
            boxes.append(RandomResizedCropAndInterpolation.get_params(blank, self.scale, self.ratio))
            flips.append(bool(self.hflip > 0 and torch.rand(1) < self.hflip))
        top, left, height, width = torch.tensor(boxes, dtype=torch.float64).unbind(1)
        rows = box_weights(h, top, height, self.size, self.interpolation, self.device)
        cols = box_weights(w, left, width, self.size, self.interpolation, self.device)
        # a flip after the resize reverses the order of the output columns
        flip = torch.tensor(flips, device=self.device).view(-1, 1, 1)
        return rows, torch.where(flip, cols.flip(1), cols)

    def _eval_weights(self, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = eval_weights(h, self.size, self.crop_pct, self.interpolation)
        cols = eval_weights(w, self.size, self.crop_pct, self.interpolation)
        return torch.from_numpy(rows.copy())[None], torch.from_numpy(cols.copy())[None]

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, H, W) -> normalised float (N, 3, size, size) on this transform's device."""
        _, _, h, w = images.shape
        rows, cols = self._train_weights(images) if self.training else self._eval_weights(h, w)
        x = images.to(self.device, non_blocking=True).float()
        x = resample(x, rows.to(self.device), cols.to(self.device))
        if self.secondary is not None:
            x = x.to(torch.uint8).cpu()
            pil = [Image.fromarray(img.permute(1, 2, 0).numpy()) for img in x]
            x = torch.from_numpy(np.stack([np.asarray(self.secondary(p)) for p in pil]))
            x = x.permute(0, 3, 1, 2).to(self.device).float()
        x = (x - self.mean.to(self.device)) / self.std.to(self.device)
        if self.random_erasing is not None:
            x = self.random_erasing(x)
        return x.contiguous()


class InMemoryLoader:
    """Batches of an in-memory dataset, augmented batch-wise; the same interface as a DataLoader."""

    def __init__(self, dataset: InMemoryImages, batch_size: int, transform: BatchTransform,
                 sampler=None, drop_last: bool = False) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.transform = transform
        self.sampler = sampler
        self.drop_last = drop_last

    def _indices(self) -> list[int]:
        return list(self.sampler) if self.sampler is not None else list(range(len(self.dataset)))

    def __len__(self) -> int:
        n = len(self.sampler) if self.sampler is not None else len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        idx = torch.as_tensor(self._indices(), dtype=torch.long)
        for b in range(len(self)):
            batch = idx[b * self.batch_size : (b + 1) * self.batch_size]
            yield self.transform(self.dataset.images[batch]), self.dataset.targets[batch]
