"""What a finished run hands over: its weights on disk, and through the sink its final metrics (parameters,
FLOPs, training and inference throughput, peak memory), the facts beside them, and every head's predictions.

Predictions go to the sink as plain integer arrays; how they are stored compactly is the store's business.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from harness.config import RunConfig
from harness.paths import EMA_MODEL, MODEL
from harness.trainer.checkpoint import Guard, Progress, save_atomic
from harness.trainer.evaluate import EvalResult
from harness.trainer.measure import count_flops, count_params, measure_throughput, peak_memory_mb
from harness.trainer.sink import MetricSink


def save_weights(run_dir: Path, model: nn.Module, ema, guard: Guard | None = None) -> None:
    """The final weights (and EMA weights); `guard` is asked before each file replaces the run's."""
    save_atomic(model.state_dict(), run_dir / MODEL, guard)
    if ema is not None:
        save_atomic(ema.module.state_dict(), run_dir / EMA_MODEL, guard)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def measure(config: RunConfig, model: nn.Module, device: torch.device, progress: Progress,
            info: dict[str, str]) -> dict[str, float]:
    """Parameters, FLOPs, training images/s, inference throughput per protocol and peak memory; the facts
    that qualify them (batch, dtype, compiled) go to `info`."""
    out = {
        "params": float(count_params(model)),
        "flops": float(count_flops(model, config.data.img_size, device)),
        "train_time_s": progress.train_time_s,
        "train_img_s": progress.train_samples / progress.train_time_s if progress.train_time_s > 0 else float("nan"),
    }
    for protocol in config.throughput.protocols:
        tp = measure_throughput(copy.deepcopy(model), config.data.img_size, device, protocol,
                                config.throughput.batch_size, config.throughput.repeats)
        out[f"throughput_{protocol}_img_s"] = tp.img_s
        info[f"throughput_batch_{protocol}"] = str(tp.batch_size)
        info[f"throughput_dtype_{protocol}"] = tp.dtype
        if protocol == "fast":
            info["throughput_compiled_fast"] = str(tp.compiled)
    if "paper" in config.throughput.protocols:
        info["throughput_batch"] = info["throughput_batch_paper"]
    out["peak_mem_mb"] = peak_memory_mb(device)
    return out


def report(sink: MetricSink, final: dict[str, float], info: dict[str, str], last_eval: EvalResult,
           teacher_eval: EvalResult | None) -> None:
    if last_eval.targets is not None:  # an evaluation always has them; a result built by hand may not
        sink.log_predictions("target", last_eval.targets)
    for head, pred in last_eval.predictions.items():
        sink.log_predictions(head, pred)
    if teacher_eval is not None:
        sink.log_predictions("teacher", teacher_eval.deployed)
    sink.log_final(final, info)
