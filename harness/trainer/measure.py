"""What a run measures besides accuracy: parameters, FLOPs, peak memory and inference throughput.

Throughput protocols:

- `paper`: the DeiT paper's Table 5 protocol. fp32, the largest batch that fits (powers of two up to
  `GPU_BATCH_CAP` on a GPU; `CPU_BATCH_CAP` on a CPU), a few warm-up batches, then `repeats` timed batches;
  images/s over the timed batches.
- `fast`: the same, under bf16 autocast with channels-last memory and `torch.compile` where the device supports
  it (CUDA).
"""

from __future__ import annotations

import contextlib
import resource
import time
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

# largest batch tried on a CPU by the paper protocol (a CPU has no out-of-memory signal worth waiting for)
CPU_BATCH_CAP = 64
# largest batch tried on a GPU (throughput of the DeiT models saturates well before; keeps benchmarks/gpu/run.sh short)
GPU_BATCH_CAP = 1024
WARMUP_BATCHES = 5


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, img_size: int, device: torch.device | str = "cpu") -> int:
    """FLOPs of one image's forward pass by torch's own counter (2 FLOPs per multiply-add)."""
    was_training = model.training
    model.eval()
    x = torch.zeros(1, 3, img_size, img_size, device=device)
    counter = FlopCounterMode(display=False)
    # the math attention kernel decomposes into matmuls the counter sees (it misses CPU flash attention)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
        model(x)
    model.train(was_training)
    return int(counter.get_total_flops())


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated by torch on CUDA; the process's peak resident set size on a CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Throughput:
    img_s: float
    batch_size: int
    dtype: str
    compiled: bool


def _prepare(model: nn.Module, protocol: str, device: torch.device):
    model = model.eval()
    compiled = False
    if protocol == "fast":
        model = model.to(memory_format=torch.channels_last)
        if device.type == "cuda":
            model = cast(nn.Module, torch.compile(model))  # an OptimizedModule; torch's stub says Callable
            compiled = True
    return model, compiled


def _autocast(protocol: str, device: torch.device):
    if protocol == "fast":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _run(model, batch: int, img_size: int, protocol: str, device: torch.device, iters: int) -> float:
    x = torch.randn(batch, 3, img_size, img_size, device=device)
    if protocol == "fast":
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), _autocast(protocol, device):
        for _ in range(WARMUP_BATCHES):
            model(x)
        _sync(device)
        start = time.perf_counter()
        for _ in range(iters):
            model(x)
        _sync(device)
        elapsed = time.perf_counter() - start
    return batch * iters / elapsed


def largest_batch(model, img_size: int, protocol: str, device: torch.device) -> int:
    """The largest power-of-two batch whose forward pass fits in GPU memory (GPU_BATCH_CAP at most)."""
    batch, best = 1, 1
    x: torch.Tensor | None = None
    while batch <= GPU_BATCH_CAP:
        try:
            x = torch.randn(batch, 3, img_size, img_size, device=device)
            with torch.no_grad(), _autocast(protocol, device):
                model(x)
            _sync(device)
            best = batch
            batch *= 2
        except torch.cuda.OutOfMemoryError:
            break
        finally:
            x = None
            torch.cuda.empty_cache()
    return best


def measure_throughput(model: nn.Module, img_size: int, device: torch.device, protocol: str = "paper",
                       batch_size: int | None = None, repeats: int = 30) -> Throughput:
    """Inference images/s of `model` under a named protocol (see the module docstring)."""
    if protocol not in ("paper", "fast"):
        raise ValueError(f"unknown throughput protocol '{protocol}'; known: paper, fast")
    model = model.eval()
    if batch_size is None:  # searched before compiling: each new batch shape would compile again
        batch_size = largest_batch(model, img_size, protocol, device) if device.type == "cuda" else CPU_BATCH_CAP
    model, compiled = _prepare(model, protocol, device)
    img_s = _run(model, batch_size, img_size, protocol, device, repeats)
    dtype = "bfloat16" if protocol == "fast" else "float32"
    return Throughput(img_s, batch_size, dtype, compiled)
