"""The precision a run trains in: `precision` of its config resolved on its device, the autocast context and,
for fp16, torch's gradient scaler (the reference code's `NativeScaler`: fp16 autocast with a loss scaler).

`auto` is bf16 on a GPU that supports it, fp16 with the scaler on one that does not (the paper's V100), and fp32
on a CPU (the CPU profiles measure in fp32; their numbers must not depend on the CPU's bf16 support).
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable

import torch

from harness.config import RunConfig

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve(config: RunConfig, device: torch.device) -> str:
    """fp32, bf16 or fp16: what the run trains in on `device`."""
    if config.precision != "auto":
        return config.precision
    if device.type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def autocast(precision: str, device: torch.device) -> Callable:
    """A factory of the autocast context of a resolved precision (a no-op one for fp32)."""
    if precision in DTYPES:
        return lambda: torch.autocast(device.type, dtype=DTYPES[precision])
    return nullcontext


def scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """fp16's gradient scaler (its gradients underflow without one); None for the other precisions."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None
