"""Datasets by name, and the training/evaluation pipelines built from a run config.

`DATASETS` maps a name to a builder `builder(config) -> DataSplits`:

- `digits`: scikit-learn's 1,797 handwritten 8x8 digits (shipped inside scikit-learn), upscaled to
  `data.img_size`, 3 channels, split 80/20 train/val, stratified and seeded by `data.split_seed`;
- `fashion_mnist`: Fashion-MNIST's 60,000/10,000 28x28 images from Debian's `dataset-fashion-mnist` package;
- `synthetic`: seeded random images in 1,000 classes, for speed benchmarks;
- `imagefolder`: `data.root/train` and `data.root/val` class folders (ImageNet's layout), decoded by
  torchvision's `ImageFolder` with timm's `create_transform`, loaded by worker processes into pinned memory.

In-memory datasets (digits, Fashion-MNIST) are held as uint8 tensors and augmented a batch at a time
(`BatchTransform`): the random-resized crop, flip, normalisation and random erasing run batched on tensors;
only timm's auto-augment policy (RandAugment/AutoAugment, PIL-based in timm) or colour jitter touches each
image, on a 32-px PIL image, which costs a fraction of a training step.
"""

from __future__ import annotations

import gzip
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_transform
from timm.data.distributed_sampler import RepeatAugSampler
from timm.data.random_erasing import RandomErasing
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from torchvision import transforms as T

from harness.config import RunConfig

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


def _posterize_zero_bits_compat() -> None:
    """timm's increasing posterize asks for 0 bits at magnitude 10 (RandAugment's m9 + noise reaches it); Pillow
    >= 12 rejects 0 where older Pillow returned a black image. Restore the old result for timm's op table."""
    from PIL import ImageOps
    from timm.data import auto_augment

    original = auto_augment.posterize

    def posterize(img, bits_to_keep, **kwargs):
        if bits_to_keep <= 0:
            return ImageOps.posterize(img, 1).point(lambda _: 0)
        return original(img, bits_to_keep, **kwargs)

    for name, fn in list(auto_augment.NAME_TO_OP.items()):
        if fn is original:
            auto_augment.NAME_TO_OP[name] = posterize


_posterize_zero_bits_compat()


class InMemoryImages(Dataset):
    """uint8 images (N, 3, H, W) with int64 targets; indexing returns (image, target)."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor) -> None:
        assert images.dtype == torch.uint8 and images.ndim == 4
        self.images = images
        self.targets = targets.long()

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.targets[index])

    def subset(self, indices: np.ndarray) -> "InMemoryImages":
        idx = torch.as_tensor(indices, dtype=torch.long)
        return InMemoryImages(self.images[idx], self.targets[idx])


@dataclass
class DataSplits:
    train: Dataset
    val: Dataset
    num_classes: int
    # True: uint8 tensors augmented in batches by `BatchTransform`; False: a Dataset that returns normalised tensors
    in_memory: bool


# ---------------------------------------------------------------------------------------------------------------
# subsets and splits


def dataset_targets(dataset: Dataset) -> np.ndarray:
    if isinstance(dataset, InMemoryImages):
        return dataset.targets.numpy()
    if isinstance(dataset, Subset):
        return dataset_targets(dataset.dataset)[np.asarray(dataset.indices)]
    return np.asarray(dataset.targets)  # torchvision ImageFolder


def balanced_subset_indices(targets: np.ndarray, size: int, seed: int) -> np.ndarray:
    """A seeded, class-balanced choice of `size` indices (classes get size // C, the first size % C one more)."""
    classes = np.unique(targets)
    if size >= len(targets):
        return np.arange(len(targets))
    rng = np.random.default_rng(seed)
    per_class = [size // len(classes) + (1 if i < size % len(classes) else 0) for i in range(len(classes))]
    chosen = []
    for c, n in zip(classes, per_class):
        members = np.flatnonzero(targets == c)
        chosen.append(rng.choice(members, size=min(n, len(members)), replace=False))
    return np.sort(np.concatenate(chosen))


def apply_train_subset(splits: DataSplits, config: RunConfig) -> DataSplits:
    size = config.data.train_subset
    if size is None or config.data.name == "synthetic":
        return splits
    idx = balanced_subset_indices(dataset_targets(splits.train), size, config.data.split_seed)
    train = splits.train.subset(idx) if isinstance(splits.train, InMemoryImages) else Subset(splits.train, idx)
    return DataSplits(train, splits.val, splits.num_classes, splits.in_memory)


def _to_rgb_uint8(gray: np.ndarray, img_size: int) -> torch.Tensor:
    """(N, h, w) grayscale in [0, 255] -> (N, 3, img_size, img_size) uint8, resized bicubic with antialias."""
    x = torch.from_numpy(np.ascontiguousarray(gray, dtype=np.float32)).unsqueeze(1)
    if x.shape[-1] != img_size or x.shape[-2] != img_size:
        x = F.interpolate(x, size=(img_size, img_size), mode="bicubic", align_corners=False, antialias=True)
    return x.clamp_(0, 255).round_().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()


# ---------------------------------------------------------------------------------------------------------------
# dataset builders


def build_digits(config: RunConfig) -> DataSplits:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images * (255.0 / 16.0)
    idx = np.arange(len(images))
    train_idx, val_idx = train_test_split(
        idx, test_size=0.2, stratify=digits.target, random_state=config.data.split_seed
    )
    pixels = _to_rgb_uint8(images, config.data.img_size)
    targets = torch.as_tensor(digits.target)
    train = InMemoryImages(pixels[np.sort(train_idx)], targets[np.sort(train_idx)])
    val = InMemoryImages(pixels[np.sort(val_idx)], targets[np.sort(val_idx)])
    return DataSplits(train, val, 10, True)


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    shape = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def build_fashion_mnist(config: RunConfig) -> DataSplits:
    root = Path(config.data.root) if config.data.root else FASHION_MNIST_DIR
    files = {
        split: (root / f"{prefix}-images-idx3-ubyte.gz", root / f"{prefix}-labels-idx1-ubyte.gz")
        for split, prefix in (("train", "train"), ("val", "t10k"))
    }
    missing = [str(p) for pair in files.values() for p in pair if not p.exists()]
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST files not found ({', '.join(missing)}); install Debian's package with "
            f"`apt-get install dataset-fashion-mnist` (or set data.root to a folder holding the idx files)"
        )
    out = {}
    for split, (images, labels) in files.items():
        out[split] = InMemoryImages(
            _to_rgb_uint8(_read_idx(images), config.data.img_size), torch.from_numpy(_read_idx(labels).astype(np.int64))
        )
    return DataSplits(out["train"], out["val"], 10, True)


def build_synthetic(config: RunConfig) -> DataSplits:
    """Seeded random images in 1,000 classes (4,096 train, 512 val, or `data.train_subset` train images): for
    speed benchmarks, where what the pixels show does not matter."""
    g = torch.Generator().manual_seed(config.data.split_seed)
    n_train = config.data.train_subset or 4096
    size = config.data.img_size

    def make(n: int) -> InMemoryImages:
        return InMemoryImages(torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8),
                              torch.randint(0, 1000, (n,), generator=g))

    return DataSplits(make(n_train), make(512), 1000, True)


def build_imagefolder(config: RunConfig) -> DataSplits:
    from torchvision.datasets import ImageFolder

    if not config.data.root:
        raise ValueError("dataset 'imagefolder' needs data.root (a folder with train/ and val/ class folders)")
    root = Path(config.data.root)
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise FileNotFoundError(f"imagefolder: {root / split} is not a folder (expected train/ and val/ class folders)")
    train = ImageFolder(str(root / "train"), transform=imagefolder_train_transform(config))
    val = ImageFolder(str(root / "val"), transform=eval_transform(config))
    return DataSplits(train, val, len(train.classes), False)


DATASETS: dict[str, Callable[[RunConfig], DataSplits]] = {
    "digits": build_digits,
    "fashion_mnist": build_fashion_mnist,
    "imagefolder": build_imagefolder,
    "synthetic": build_synthetic,
}


def build_dataset(config: RunConfig) -> DataSplits:
    try:
        builder = DATASETS[config.data.name]
    except KeyError:
        raise KeyError(f"unknown dataset '{config.data.name}'; known datasets: {', '.join(sorted(DATASETS))}") from None
    return apply_train_subset(builder(config), config)


# ---------------------------------------------------------------------------------------------------------------
# transforms


def _timm_train_kwargs(config: RunConfig) -> dict[str, Any]:
    a = config.augment
    return dict(
        input_size=config.data.img_size,
        is_training=True,
        scale=(a.crop_scale_min, 1.0),
        hflip=a.hflip,
        color_jitter=a.color_jitter if a.color_jitter > 0 else None,
        auto_augment=a.auto_augment,
        interpolation=a.interpolation,
        re_prob=a.random_erasing,
        re_mode="pixel",
        re_count=1,
        mean=IMAGENET_DEFAULT_MEAN,
        std=IMAGENET_DEFAULT_STD,
    )


def imagefolder_train_transform(config: RunConfig) -> Callable:
    """timm's training transform with the run's recipe switches (as the DeiT reference code builds it)."""
    return create_transform(**_timm_train_kwargs(config))


def eval_transform(config: RunConfig) -> Callable:
    return create_transform(
        input_size=config.data.img_size,
        is_training=False,
        interpolation=config.augment.interpolation,
        crop_pct=config.data.crop_pct,
        mean=IMAGENET_DEFAULT_MEAN,
        std=IMAGENET_DEFAULT_STD,
    )


_GRID_MODE = {"bicubic": "bicubic", "bilinear": "bilinear", "nearest": "nearest"}


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
    return F.grid_sample(images, grid, mode=_GRID_MODE[mode], padding_mode="border", align_corners=False)


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
            _, secondary, _ = create_transform(**_timm_train_kwargs(config), separate=True)
            self.secondary = secondary if len(secondary.transforms) else None
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


# ---------------------------------------------------------------------------------------------------------------
# samplers and loaders


class SeededRepeatAugSampler(RepeatAugSampler):
    """timm's repeated-augmentation sampler (the DeiT reference's RASampler), shuffled by seed and epoch
    (the reference shuffles by epoch alone, so two seeds would see the same order)."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, num_repeats: int, seed: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, num_repeats=num_repeats)
        self.seed = seed

    def set_epoch(self, epoch: int) -> None:
        self.epoch = self.seed * 1_000_003 + epoch


def build_train_sampler(config: RunConfig, dataset: Dataset, world_size: int = 1, rank: int = 0):
    """Repeated augmentation (also in one process: the reference code drops it there) or a seeded shuffle."""
    if config.augment.repeated_aug:
        return SeededRepeatAugSampler(dataset, world_size, rank, config.augment.repeated_aug_repeats, config.seed)
    return DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=config.seed)


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


def build_train_loader(config: RunConfig, splits: DataSplits, batch_size: int, world_size: int = 1, rank: int = 0,
                       pin_memory: bool = False, device: torch.device | str = "cpu"):
    """In-memory datasets: batches augmented on `device`; others: a DataLoader with workers and pinned memory."""
    sampler = build_train_sampler(config, splits.train, world_size, rank)
    if splits.in_memory:
        transform = BatchTransform(config, training=True, device=device)
        return InMemoryLoader(splits.train, batch_size, transform, sampler, drop_last=True)
    workers = config.data.num_workers
    return DataLoader(
        splits.train, batch_size=batch_size, sampler=sampler, num_workers=workers, pin_memory=pin_memory,
        drop_last=True, persistent_workers=workers > 0,
    )


def build_eval_loader(config: RunConfig, dataset: Dataset, in_memory: bool, batch_size: int, indices=None,
                      pin_memory: bool = False, device: torch.device | str = "cpu"):
    """Sequential evaluation batches (optionally over a shard of indices, for several processes)."""
    if indices is not None:
        dataset = dataset.subset(indices) if in_memory else Subset(dataset, list(indices))
    if in_memory:
        return InMemoryLoader(dataset, batch_size, BatchTransform(config, training=False, device=device))
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=config.data.num_workers,
                      pin_memory=pin_memory)
