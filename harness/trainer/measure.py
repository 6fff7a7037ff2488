"""What a run measures besides accuracy: parameters, FLOPs, peak memory and inference throughput.

Throughput protocols:

- `paper`: the DeiT paper's Table 5 protocol. fp32 (TF32 off: on Ampere and later torch would otherwise run
  "fp32" matmuls and convolutions in TF32), the largest batch that fits (on a GPU: powers of two until one does
  not fit, then bisection between the last two; `CPU_BATCH_CAP` on a CPU), a few warm-up batches, then `repeats`
  timed batches; images/s over the timed batches. The batch is recorded beside the figure.
- `fast`: under bf16 autocast with channels-last memory and `torch.compile` where the device supports it
  (CUDA), TF32 as torch has it, at the largest power-of-two batch up to `GPU_BATCH_CAP`.
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
# largest batch tried on a GPU by the fast protocol (throughput saturates well before; keeps benchmarks/gpu/run.sh
# short); the paper protocol searches up to PAPER_BATCH_LIMIT, far beyond any card's memory for these models
GPU_BATCH_CAP = 1024
PAPER_BATCH_LIMIT = 1 << 20
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


@contextlib.contextmanager
def _tf32(allowed: bool):
    """TF32 matmuls and cuDNN convolutions allowed or not, as torch's flags had them afterwards."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def _fits(model, batch: int, img_size: int, protocol: str, device: torch.device) -> bool:
    x: torch.Tensor | None = None
    try:
        x = torch.randn(batch, 3, img_size, img_size, device=device)
        with torch.no_grad(), _autocast(protocol, device):
            model(x)
        _sync(device)
        return True
    except torch.cuda.OutOfMemoryError:
        return False
    finally:
        x = None
        torch.cuda.empty_cache()


def search_batch(fits, limit: int, refine: bool) -> int:
    """The largest batch that `fits(batch)`: powers of two up to `limit`, then (`refine`) bisection between the
    last that fit and the first that did not. 1 when not even one fits (the measurement then says so)."""
    best, batch = 1, 1
    while batch <= limit and fits(batch):
        best, batch = batch, batch * 2
    if refine and batch <= limit:  # `batch` did not fit
        low, high = best, batch
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if fits(middle) else (low, middle)
        best = low
    return best


def largest_batch(model, img_size: int, protocol: str, device: torch.device) -> int:
    """The largest batch whose forward pass fits in GPU memory: searched without a cap and refined for the paper
    protocol, powers of two up to GPU_BATCH_CAP for the fast one."""
    paper = protocol == "paper"
    return search_batch(lambda batch: _fits(model, batch, img_size, protocol, device),
                        PAPER_BATCH_LIMIT if paper else GPU_BATCH_CAP, refine=paper)


def measure_throughput(model: nn.Module, img_size: int, device: torch.device, protocol: str = "paper",
                       batch_size: int | None = None, repeats: int = 30) -> Throughput:
    """Inference images/s of `model` under a named protocol (see the module docstring)."""
    if protocol not in ("paper", "fast"):
        raise ValueError(f"unknown throughput protocol '{protocol}'; known: paper, fast")
    model = model.eval()
    with _tf32(False) if protocol == "paper" else contextlib.nullcontext():
        if batch_size is None:  # searched before compiling: each new batch shape would compile again
            batch_size = largest_batch(model, img_size, protocol, device) if device.type == "cuda" else CPU_BATCH_CAP
        model, compiled = _prepare(model, protocol, device)
        img_s = _run(model, batch_size, img_size, protocol, device, repeats)
    dtype = "bfloat16" if protocol == "fast" else "float32"
    return Throughput(img_s, batch_size, dtype, compiled)
