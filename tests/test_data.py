"""Datasets by name, splits, class-balanced subsets and the batched in-memory transform."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

from harness.config import RunConfig
from harness import registry
from harness.registry import check_dataset
from harness.trainer import datasets
from harness.trainer.batching import BatchTransform
from harness.trainer.datasets import balanced_subset_indices, build_dataset


def config(**kw):
    base = {"data": {"name": "digits", "img_size": 32, "num_workers": 0}}
    for key, value in kw.items():
        base.setdefault(key, {}).update(value)
    return RunConfig.model_validate(base)


def test_registry_names():
    assert {"digits", "fashion_mnist", "imagefolder"} <= set(registry.DATASETS)
    assert check_dataset("digits") == "digits"
    with pytest.raises(KeyError, match="known datasets"):
        check_dataset("cifar")


def test_digits_split_is_seeded_stratified_and_disjoint():
    a = build_dataset(config())
    assert a.in_memory and a.num_classes == 10
    assert a.train.images.shape[1:] == (3, 32, 32) and a.train.images.dtype == torch.uint8
    assert len(a.train) + len(a.val) == 1797 and len(a.val) == 360
    assert np.bincount(a.val.targets.numpy()).min() >= 35
    b = build_dataset(config())
    assert torch.equal(a.val.images, b.val.images)
    c = build_dataset(config(data={"split_seed": 1}))
    assert not torch.equal(a.val.targets, c.val.targets)


def test_train_subset_is_class_balanced_and_seeded():
    targets = np.repeat(np.arange(10), 50)
    idx = balanced_subset_indices(targets, 35, seed=0)
    assert len(idx) == 35 and set(np.bincount(targets[idx])) <= {3, 4}
    assert np.array_equal(idx, balanced_subset_indices(targets, 35, seed=0))
    splits = build_dataset(config(data={"train_subset": 100}))
    assert len(splits.train) == 100 and np.bincount(splits.train.targets.numpy()).tolist() == [10] * 10


def test_batch_transform_shapes_and_eval_is_deterministic():
    splits = build_dataset(config(data={"img_size": 24}))
    batch = splits.train.images[:16]
    train_tf = BatchTransform(config(data={"img_size": 24}), training=True)
    out = train_tf(batch)
    assert out.shape == (16, 3, 24, 24) and out.dtype == torch.float32
    eval_tf = BatchTransform(config(data={"img_size": 24}), training=False)
    assert torch.equal(eval_tf(batch), eval_tf(batch))


def test_fashion_mnist_missing_package_names_it(monkeypatch, tmp_path):
    monkeypatch.setattr(datasets, "FASHION_MNIST_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        build_dataset(config(data={"name": "fashion_mnist"}))


def test_imagefolder_needs_a_root():
    with pytest.raises(ValueError, match="data.root"):
        build_dataset(config(data={"name": "imagefolder"}))


def make_imagefolder(root, classes=2, per_class=4, size=40):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in range(classes):
            d = root / split / f"class{c}"
            d.mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(d / f"{i}.png")
    return root


@pytest.mark.filterwarnings("ignore:'pin_memory' argument is set as true")
def test_imagefolder_loader_uses_workers_and_timm_transforms(tmp_path):
    from harness.trainer.loaders import build_eval_loader, build_train_loader

    cfg = config(data={"name": "imagefolder", "root": str(make_imagefolder(tmp_path)), "num_workers": 1},
                 augment={"repeated_aug": False})
    splits = build_dataset(cfg)
    assert not splits.in_memory and splits.num_classes == 2
    loader = build_train_loader(cfg, splits, batch_size=4, pin_memory=True)
    assert loader.num_workers == 1 and loader.pin_memory and loader.drop_last
    loader.sampler.set_epoch(0)
    images, targets = next(iter(loader))
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.float32
    val = build_eval_loader(cfg, splits.val, False, batch_size=8)
    images, _ = next(iter(val))
    assert images.shape == (4 * 2, 3, 32, 32)


@pytest.mark.skipif(not datasets.FASHION_MNIST_DIR.exists(), reason="apt-get install dataset-fashion-mnist")
def test_fashion_mnist_from_the_debian_package():
    splits = build_dataset(config(data={"name": "fashion_mnist", "img_size": 28, "train_subset": 100}))
    assert len(splits.val) == 10_000 and splits.val.images.shape[1:] == (3, 28, 28)
    assert np.bincount(splits.train.targets.numpy()).tolist() == [10] * 10


def _augment_op(transform, name):
    from harness.trainer.transforms import _augment_ops

    return next(op for op in _augment_ops(transform) if op.name == name)


def test_posterize_to_zero_bits_gives_black_without_patching_timm():
    """timm's increasing posterize asks for 0 bits at magnitude 10; Pillow >= 12 refuses 0 bits."""
    from PIL import Image
    from timm.data import auto_augment, create_transform

    from harness.trainer.transforms import imagefolder_train_transform

    cfg = config()
    image = Image.new("RGB", (32, 32), (200, 120, 40))
    for transform in (imagefolder_train_transform(cfg), BatchTransform(cfg, training=True).secondary):
        op = _augment_op(transform, "PosterizeIncreasing")
        op.prob, op.magnitude, op.magnitude_std = 1.0, 10, 0
        assert op(image).getextrema() == ((0, 0), (0, 0), (0, 0))
    # timm's own op table and a transform built by timm itself are left as timm made them
    assert auto_augment.NAME_TO_OP["PosterizeIncreasing"] is auto_augment.posterize
    plain = _augment_op(create_transform(32, is_training=True, auto_augment="rand-m9-mstd0.5-inc1"),
                        "PosterizeIncreasing")
    assert plain.aug_fn is auto_augment.posterize
