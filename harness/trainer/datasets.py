"""The built-in datasets' builders, `builder(config) -> DataSplits`, which `harness.registry.DATASETS` names:

- `digits`: scikit-learn's 1,797 handwritten 8x8 digits (shipped inside scikit-learn), resized to
  `data.img_size` as Pillow's bicubic resize does, 3 channels, split 80/20 train/val, stratified and seeded by `data.split_seed`;
- `fashion_mnist`: Fashion-MNIST's 60,000/10,000 28x28 images from Debian's `dataset-fashion-mnist` package;
- `synthetic`: seeded random images in 1,000 classes, for speed benchmarks;
- `imagefolder`: `data.root/train` and `data.root/val` class folders (ImageNet's layout), decoded by
  torchvision's `ImageFolder` with timm's transforms (`harness.trainer.transforms`).

In-memory datasets (digits, Fashion-MNIST, synthetic) are uint8 tensors, augmented a batch at a time by
`harness.trainer.batching`; `data.train_subset` takes a seeded, class-balanced subset of any of them.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sized, cast

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from harness import registry
from harness.config import RunConfig
from harness.trainer.resampling import resample, resample_weights
from harness.trainer.transforms import eval_transform, imagefolder_train_transform

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


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


def size(dataset: Dataset) -> int:
    """The number of examples: every dataset here has a length, though torch's `Dataset` type does not say so."""
    return len(cast(Sized, dataset))


def dataset_targets(dataset: Dataset) -> np.ndarray:
    if isinstance(dataset, InMemoryImages):
        return dataset.targets.numpy()
    if isinstance(dataset, Subset):
        return dataset_targets(dataset.dataset)[np.asarray(dataset.indices)]
    return np.asarray(cast(Any, dataset).targets)  # torchvision ImageFolder


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
    train = splits.train.subset(idx) if isinstance(splits.train, InMemoryImages) else Subset(splits.train, idx.tolist())
    return DataSplits(train, splits.val, splits.num_classes, splits.in_memory)


def _to_rgb_uint8(gray: np.ndarray, img_size: int) -> torch.Tensor:
    """(N, h, w) grayscale in [0, 255] -> (N, 3, img_size, img_size) uint8: rounded to 8 bits, then resized as
    Pillow's bicubic resize does (what `Image.resize` makes of the source image)."""
    x = torch.from_numpy(np.ascontiguousarray(gray, dtype=np.float32)).unsqueeze(1).add_(0.5).floor_().clamp_(0, 255)
    if x.shape[-1] != img_size or x.shape[-2] != img_size:
        rows = torch.from_numpy(resample_weights(x.shape[-2], img_size, "bicubic").copy())[None]
        cols = torch.from_numpy(resample_weights(x.shape[-1], img_size, "bicubic").copy())[None]
        x = resample(x, rows, cols)
    return x.to(torch.uint8).expand(-1, 3, -1, -1).contiguous()


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


def build_dataset(config: RunConfig) -> DataSplits:
    """The run's dataset, by its name in the catalog (a lab's, from the run's `imports:`, or a built-in one)."""
    registry.import_modules(config.imports)
    return apply_train_subset(registry.DATASETS.get(config.data.name)(config), config)
