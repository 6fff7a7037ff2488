"""Pillow's resize, batched on tensors: the in-memory data path resamples with the same weights as the image path.

Pillow resizes in two separable passes (columns, then rows), each a matrix of filter weights computed as in its
`Resample.c` (`precompute_coeffs`): the kernel is centred on each output pixel's centre mapped into the source,
widened by the scale when shrinking (an antialiasing low-pass), cut off at the image's edges and renormalised to
sum 1; 8-bit images are rounded to 0..255 after each pass. Its bicubic kernel is Keys' with a = -0.5 (torch's
`grid_sample` and non-antialiased `interpolate` use a = -0.75, which overshoots more). NEAREST takes the source
pixel under each output pixel's centre.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

# Keys' cubic convolution parameter of Pillow's BICUBIC
_A = -0.5


def _bicubic(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    near = ((_A + 2.0) * x - (_A + 3.0)) * x * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * _A
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


def _triangle(x: np.ndarray) -> np.ndarray:
    return np.clip(1.0 - np.abs(x), 0.0, None)


# Pillow's filters: (support in source pixels at scale 1, kernel)
_FILTERS = {"bicubic": (2.0, _bicubic), "bilinear": (1.0, _triangle)}


@lru_cache(maxsize=4096)
def resample_weights(length: int, out: int, mode: str) -> np.ndarray:
    """(out, length) weights of Pillow's resize of `length` pixels to `out` (read-only; cached)."""
    w = np.zeros((out, length), dtype=np.float64)
    scale = length / out
    centers = (np.arange(out) + 0.5) * scale
    if mode == "nearest":
        w[np.arange(out), np.minimum(centers.astype(int), length - 1)] = 1.0
    else:
        support, kernel = _FILTERS[mode]
        filterscale = max(scale, 1.0)
        support *= filterscale
        for xx, center in enumerate(centers):
            # C's (int) truncation, as Pillow rounds the window's ends
            xmin = max(int(center - support + 0.5), 0)
            xmax = min(int(center + support + 0.5), length)
            k = kernel((np.arange(xmin, xmax) - center + 0.5) / filterscale)
            w[xx, xmin:xmax] = k / k.sum() if k.sum() != 0.0 else k
    w = w.astype(np.float32)
    w.flags.writeable = False
    return w


def crop_weights(length: int, start: int, extent: int, out: int, mode: str) -> np.ndarray:
    """(out, length) weights that crop [start, start + extent) of an axis and resize it to `out` pixels (a crop
    first, as torchvision's `resized_crop` does: the kernel stops at the crop's edges)."""
    w = np.zeros((out, length), dtype=np.float32)
    w[:, start : start + extent] = resample_weights(extent, out, mode)
    return w


def resample(images: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Pillow's resize of a float batch holding 8-bit values (N, C, H, W): columns, then rows (the order of
    Pillow's C core), each pass rounded to 0..255. rows: (N or 1, out_h, H) and cols: (N or 1, out_w, W) weights
    on the images' device; one matrix (leading 1) serves the whole batch."""
    x = images @ (cols[0] if cols.shape[0] == 1 else cols[:, None]).transpose(-1, -2)
    x = x.add_(0.5).floor_().clamp_(0, 255)
    x = (rows[0] if rows.shape[0] == 1 else rows[:, None]) @ x
    return x.add_(0.5).floor_().clamp_(0, 255)
