"""timm's image transforms built from a run config: the imagefolder pipelines and the per-image part of the
in-memory one (RandAugment/AutoAugment or colour jitter, timm's PIL ops).

Pillow >= 12 refuses to posterize to 0 bits, which timm's increasing posterize asks for at magnitude 10
(RandAugment's m9 plus magnitude noise reaches it); older Pillow returned a black image. Each transform built
here has its own posterize ops rebound to return that black image (`with_zero_bit_posterize`), so training
does not fail at random and timm's module state is left alone.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, auto_augment, create_transform

from harness.config import RunConfig


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
    return with_zero_bit_posterize(create_transform(**_timm_train_kwargs(config)))


def per_image_train_transform(config: RunConfig) -> Callable | None:
    """The PIL part of timm's training transform (auto-augment or colour jitter), or None when there is none."""
    _, secondary, _ = create_transform(**_timm_train_kwargs(config), separate=True)
    return with_zero_bit_posterize(secondary) if len(secondary.transforms) else None


def eval_transform(config: RunConfig) -> Callable:
    return create_transform(
        input_size=config.data.img_size,
        is_training=False,
        interpolation=config.augment.interpolation,
        crop_pct=config.data.crop_pct,
        mean=IMAGENET_DEFAULT_MEAN,
        std=IMAGENET_DEFAULT_STD,
    )


def posterize(img: Image.Image, bits_to_keep: int, **kwargs: Any) -> Image.Image:
    """timm's posterize, where 0 bits gives the black image older Pillow returned (see the module docstring)."""
    if bits_to_keep <= 0:
        return img.point(lambda _: 0)
    return auto_augment.posterize(img, bits_to_keep, **kwargs)


def _augment_ops(transform: Any) -> Iterator[auto_augment.AugmentOp]:
    """Every timm AugmentOp inside a transform: Compose, RandAugment, AutoAugment (policies) and AugMix."""
    if isinstance(transform, auto_augment.AugmentOp):
        yield transform
    for child in getattr(transform, "transforms", None) or ():
        yield from _augment_ops(child)
    for op in getattr(transform, "ops", None) or ():
        yield from _augment_ops(op)
    for sub_policy in getattr(transform, "policy", None) or ():
        for op in sub_policy:
            yield from _augment_ops(op)


def with_zero_bit_posterize(transform: Callable) -> Callable:
    """The same transform, its own posterize ops rebound to `posterize` (timm's op table is not touched)."""
    for op in _augment_ops(transform):
        if op.aug_fn is auto_augment.posterize:
            op.aug_fn = posterize
    return transform
