"""One set of pixels: the in-memory data path is a batched implementation of the image-folder path's transforms.

The digits are exported to an image folder (lossless PNG), then the same images go through timm's transforms
on PIL images (the image path) and through `BatchTransform` (the in-memory path) with the same random state.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from timm.data import IMAGENET_DEFAULT_STD

from harness.config import RunConfig
from harness.trainer.batching import BatchTransform
from harness.trainer.datasets import InMemoryImages, build_dataset
from harness.trainer.resampling import resample, resample_weights

# one 8-bit grey level of the smallest channel std, in normalised units: Pillow rounds its first pass to 8
# bits in fixed point, the in-memory path in float, so a pixel may land one level apart
ONE_LEVEL = 1.0 / (255 * min(IMAGENET_DEFAULT_STD)) + 1e-5


def config(**sections) -> RunConfig:
    base = {
        "data": {"name": "digits", "img_size": 16, "num_workers": 0},
        "augment": {"auto_augment": None, "color_jitter": 0.0, "random_erasing": 0.0, "crop_scale_min": 0.08,
                    "hflip": 0.5},
    }
    for key, value in sections.items():
        base.setdefault(key, {}).update(value)
    return RunConfig.model_validate(base)


def export_imagefolder(splits, root: Path) -> Path:
    """Each split's images as `root/SPLIT/CLASS/INDEX.png` (ImageFolder's layout; PNG keeps every pixel)."""
    for split, data in (("train", splits.train), ("val", splits.val)):
        for i, (image, target) in enumerate(zip(data.images, data.targets.tolist())):
            folder = root / split / f"{target:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{i:05d}.png")
    return root


def in_folder_order(data: InMemoryImages) -> InMemoryImages:
    """The images in ImageFolder's order (by class folder, then file name)."""
    return data.subset(np.argsort(data.targets.numpy(), kind="stable"))


def seeded(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


@pytest.fixture(scope="module")
def digits_folder(tmp_path_factory):
    cfg = config()
    splits = build_dataset(cfg)
    root = export_imagefolder(splits, tmp_path_factory.mktemp("digits"))
    return splits, root


def both_paths(splits, root, cfg: RunConfig, training: bool, count: int = 200):
    folder = build_dataset(cfg.model_copy(update={"data": cfg.data.model_copy(update={"name": "imagefolder",
                                                                                      "root": str(root)})}))
    dataset = folder.train if training else folder.val
    memory = in_folder_order(splits.train if training else splits.val)
    seeded(7)
    image_path = torch.stack([dataset[k][0] for k in range(count)])
    seeded(7)
    memory_path = BatchTransform(cfg, training=training)(memory.images[:count])
    return image_path, memory_path


@pytest.mark.parametrize("crop_pct", [0.875, 0.9, 1.0])
def test_evaluation_resize_and_centre_crop_match_the_image_path(digits_folder, crop_pct):
    cfg = config(data={"crop_pct": crop_pct})
    image_path, memory_path = both_paths(*digits_folder, cfg, training=False)
    assert image_path.shape == memory_path.shape == (200, 3, 16, 16)
    assert (image_path - memory_path).abs().max() <= ONE_LEVEL


@pytest.mark.parametrize("augment", [
    {"crop_scale_min": 0.08, "hflip": 0.5},            # the paper's crop and flip
    {"crop_scale_min": 0.35, "hflip": 0.0},            # the digits profiles'
    {"crop_scale_min": 0.35, "hflip": 0.5, "interpolation": "bilinear"},
])
def test_training_crop_and_flip_match_the_image_path_with_the_same_random_state(digits_folder, augment):
    cfg = config(augment=augment)
    image_path, memory_path = both_paths(*digits_folder, cfg, training=True)
    assert (image_path - memory_path).abs().max() <= ONE_LEVEL
    # the crops are random: a different random state gives other pixels
    seeded(8)
    other = BatchTransform(cfg, training=True)(in_folder_order(digits_folder[0].train).images[:200])
    assert (other - memory_path).abs().max() > 10 * ONE_LEVEL


def test_stored_digits_are_pillows_resize_of_the_source_images():
    from sklearn.datasets import load_digits

    from harness.trainer.datasets import _to_rgb_uint8

    source = load_digits().images * (255.0 / 16.0)
    stored = _to_rgb_uint8(source, 20)
    assert stored.shape == (1797, 3, 20, 20)
    pillow = np.stack([np.asarray(Image.fromarray(np.floor(img + 0.5).astype(np.uint8)).resize((20, 20), Image.BICUBIC))
                       for img in source])
    assert np.abs(stored[:, 0].numpy().astype(int) - pillow.astype(int)).max() <= 1


@pytest.mark.parametrize("size,out,mode", [(8, 16, "bicubic"), (28, 16, "bicubic"), (16, 18, "bicubic"),
                                           (11, 16, "bilinear"), (7, 16, "nearest"), (224, 256, "bicubic")])
def test_resample_is_pillows_resize(size, out, mode):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    filters = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST}
    pillow = np.asarray(Image.fromarray(image).resize((out, out), filters[mode])).astype(np.float32)
    w = torch.from_numpy(resample_weights(size, out, mode).copy())[None]
    ours = resample(torch.from_numpy(image).permute(2, 0, 1)[None].float(), w, w)[0].permute(1, 2, 0).numpy()
    assert np.abs(ours - pillow).max() <= 1


def top1_of_three_seeds(base: dict, root: Path | None, tmp_path: Path) -> list[float]:
    from harness.trainer import train
    from harness.trainer.sink import MemorySink

    out = []
    for seed in (0, 1, 2):
        raw = {**base, "seed": seed}
        if root is not None:
            raw["data"] = {**base["data"], "name": "imagefolder", "root": str(root)}
        sink = MemorySink()
        train(RunConfig.model_validate(raw), tmp_path / f"{root is not None}-{seed}", sink, lambda h: None)
        out.append(sink.final["top1"])
    return out


@pytest.mark.slow  # six runs of a small convnet, 4 epochs of 600 digits: one to two minutes on 2 cores
def test_the_same_run_through_both_paths_reaches_the_same_top1_within_the_seed_spread(digits_folder, tmp_path):
    torch.set_num_threads(1)
    base = {
        "model": {"name": "resnet_tiny_32"},
        # the same 600 images in both paths: the class-balanced subset picks the same members of each class,
        # which keep their order in the image folder
        "data": {"name": "digits", "img_size": 16, "num_workers": 0, "train_subset": 600},
        "schedule": {"epochs": 4, "warmup_epochs": 0},
        "optimizer": {"base_lr": 5e-3},
        "augment": {"auto_augment": None, "color_jitter": 0.0, "random_erasing": 0.0, "mixup": 0.0, "cutmix": 0.0,
                    "repeated_aug": False, "crop_scale_min": 0.35, "hflip": 0.0},
        "throughput": {"protocols": []}, "batch_size": 64, "eval_batch_size": 360, "device": "cpu",
    }
    memory = top1_of_three_seeds(base, None, tmp_path)
    folder = top1_of_three_seeds(base, digits_folder[1], tmp_path)
    spread = max(max(memory) - min(memory), max(folder) - min(folder))
    # both learn (chance is 10%), and their means differ by less than either path's spread over seeds
    assert min(memory + folder) > 80, (memory, folder)
    assert abs(sum(memory) / 3 - sum(folder) / 3) <= spread, (memory, folder)
