"""In-memory datasets augmented a batch at a time: `BatchTransform` and the loader that applies it.

The random-resized crop, flip, normalisation and random erasing run batched on tensors; only timm's
auto-augment policy (RandAugment/AutoAugment, PIL-based in timm) or colour jitter touches each image, on a
small PIL image, which costs a fraction of a training step.
"""

from __future__ import annotations

import math
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.data.random_erasing import RandomErasing
from torchvision import transforms as T

from harness.config import RunConfig
from harness.trainer.datasets import InMemoryImages
from harness.trainer.transforms import per_image_train_transform

def crop_resize(images: torch.Tensor, boxes: torch.Tensor, size: int, mode: str, flip: torch.Tensor | None = None) -> torch.Tensor:
    """Crop each image to its box (top, left, height, width in pixels) and resize to size x size, in one batched
    `grid_sample`; `flip` (bool per image) mirrors horizontally. images: float (N, C, H, W)."""
    n, _, h, w = images.shape
    top, left, bh, bw = boxes.to(images.dtype).unbind(1)
    # affine map from output coordinates in [-1, 1] to input coordinates in [-1, 1] (align_corners=False)
    sx = bw / w
    sy = bh / h
    cx = (2 * left + bw) / w - 1
    cy = (2 * top + bh) / h - 1
    if flip is not None:
        sx = torch.where(flip, -sx, sx)
    theta = torch.zeros(n, 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0] = sx
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = sy
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta, [n, images.shape[1], size, size], align_corners=False)
    return F.grid_sample(images, grid, mode=mode, padding_mode="border", align_corners=False)


class BatchTransform:
    """The training (or evaluation) transform of an in-memory dataset, applied to a uint8 batch (N, 3, H, W).

    The same recipe as timm's `create_transform(is_training=True)` in the same order: random-resized crop and
    horizontal flip (batched), auto-augment or colour jitter (timm's own per-image PIL ops, `secondary`),
    normalisation and random erasing (batched). Evaluation: a centre crop of `crop_pct`, resized.
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

    def _train_boxes(self, images: torch.Tensor) -> torch.Tensor:
        return torch.tensor(
            [T.RandomResizedCrop.get_params(img, list(self.scale), list(self.ratio)) for img in images],
            dtype=torch.float32,
        )

    @property
    def crops(self) -> bool:
        """False when the random-resized crop is the identity (scale (1, 1): the whole image) and no flip."""
        return self.scale[0] < 1.0 or self.hflip > 0

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, H, W) -> normalised float (N, 3, size, size) on this transform's device."""
        n, _, h, w = images.shape
        x = images.to(self.device, non_blocking=True).float()
        if self.training:
            if self.crops or h != self.size or w != self.size:
                boxes = self._train_boxes(images).to(self.device)
                flip = (torch.rand(n) < self.hflip).to(self.device)
                x = crop_resize(x, boxes, self.size, self.interpolation, flip)
            if self.secondary is not None:
                x = x.clamp_(0, 255).round_().to(torch.uint8).cpu()
                pil = [Image.fromarray(img.permute(1, 2, 0).numpy()) for img in x]
                x = torch.from_numpy(np.stack([np.asarray(self.secondary(p)) for p in pil]))
                x = x.permute(0, 3, 1, 2).to(self.device).float()
        elif self.crop_pct != 1.0 or h != self.size or w != self.size:
            ch, cw = h * self.crop_pct, w * self.crop_pct
            box = torch.tensor([(h - ch) / 2, (w - cw) / 2, ch, cw]).expand(n, 4).to(self.device)
            x = crop_resize(x, box, self.size, self.interpolation)
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
