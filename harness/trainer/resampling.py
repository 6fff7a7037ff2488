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


def _bicubic(x: torch.Tensor) -> torch.Tensor:
    x = x.abs()
    near = ((_A + 2.0) * x - (_A + 3.0)) * x * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * _A
    return torch.where(x < 1.0, near, torch.where(x < 2.0, far, torch.zeros_like(x)))


def _triangle(x: torch.Tensor) -> torch.Tensor:
    return (1.0 - x.abs()).clamp(min=0.0)


# Pillow's filters: (support in source pixels at scale 1, kernel)
_FILTERS = {"bicubic": (2.0, _bicubic), "bilinear": (1.0, _triangle)}


def box_weights(length: int, starts: torch.Tensor, extents: torch.Tensor, out: int, mode: str,
                device: torch.device | str = "cpu") -> torch.Tensor:
    """(N, out, length) float32 weights on `device`: per image, Pillow's resize to `out` pixels of the window
    [start, start + extent) of an axis of `length` pixels, cropped first as torchvision's `resized_crop` does
    (the kernel stops at the window's edges). Computed at once for the batch, in float64 as Pillow does."""
    f64, on = torch.float64, device
    start = torch.as_tensor(starts, dtype=f64, device=on).view(-1, 1, 1)
    extent = torch.as_tensor(extents, dtype=f64, device=on).view(-1, 1, 1)
    scale = extent / out
    # each output pixel's centre, and each source pixel, in the window's coordinates
    center = (torch.arange(out, dtype=f64, device=on).view(1, -1, 1) + 0.5) * scale
    source = torch.arange(length, dtype=f64, device=on).view(1, 1, -1) - start
    if mode == "nearest":
        w = (source == torch.minimum(center.floor(), extent - 1)).to(torch.float64)
    else:
        unit_support, kernel = _FILTERS[mode]
        filterscale = scale.clamp(min=1.0)
        support = unit_support * filterscale
        # Pillow's window: C's (int) of (centre ± support + 0.5), within the crop
        low = (center - support + 0.5).floor().clamp(min=0.0)
        high = torch.minimum((center + support + 0.5).floor(), extent)
        w = kernel((source - center + 0.5) / filterscale) * ((source >= low) & (source < high))
        total = w.sum(-1, keepdim=True)
        w = torch.where(total != 0, w / torch.where(total != 0, total, 1.0), w)
    return w.to(torch.float32)


@lru_cache(maxsize=1024)
def resample_weights(length: int, out: int, mode: str) -> np.ndarray:
    """(out, length) weights of Pillow's resize of `length` pixels to `out` (read-only; cached)."""
    w = box_weights(length, torch.zeros(1), torch.full((1,), float(length)), out, mode)[0].numpy()
    w.flags.writeable = False
    return w


def resample(images: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Pillow's resize of a float batch holding 8-bit values (N, C, H, W): columns, then rows (the order of
    Pillow's C core), each pass rounded to 0..255. rows: (N or 1, out_h, H) and cols: (N or 1, out_w, W) weights
    on the images' device; one matrix (leading 1) serves the whole batch."""
    x = images @ (cols[0] if cols.shape[0] == 1 else cols[:, None]).transpose(-1, -2)
    x = x.add_(0.5).floor_().clamp_(0, 255)
    x = (rows[0] if rows.shape[0] == 1 else rows[:, None]) @ x
    return x.add_(0.5).floor_().clamp_(0, 255)
