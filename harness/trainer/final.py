"""What a finished run hands over: its weights on disk (published through the sink), and through it its final metrics (parameters,
FLOPs, training and inference throughput, peak memory), the facts beside them, and every head's predictions.

Predictions go to the sink as plain integer arrays; how they are stored compactly is the store's business.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from harness.config import RunConfig
from harness.trainer.checkpoint import Progress, save_atomic
from harness.trainer.evaluate import EvalResult
from harness.trainer.measure import count_flops, count_params, measure_throughput, peak_memory_mb
from harness.trainer.sink import EMA_MODEL, MODEL, MetricSink, RunFile


def save_weights(run_dir: Path, model: nn.Module, ema, sink: MetricSink) -> dict[str, RunFile]:
    """The final weights (and EMA weights), each under the writer's own name (`sink.file_name`), by role: the
    sink publishes them with the final results."""
    files = {MODEL: save_atomic(model.state_dict(), run_dir / sink.file_name(MODEL))}
    if ema is not None:
        files[EMA_MODEL] = save_atomic(ema.module.state_dict(), run_dir / sink.file_name(EMA_MODEL))
    return files


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
           teacher_eval: EvalResult | None, save: Callable[[], dict[str, RunFile]] | None = None) -> None:
    """Predictions, then the weights (`save()`: written, by role) published with the final metrics and facts."""
    if last_eval.targets is not None:  # an evaluation always has them; a result built by hand may not
        sink.log_predictions("target", last_eval.targets)
    for head, pred in last_eval.predictions.items():
        sink.log_predictions(head, pred)
    if teacher_eval is not None:
        sink.log_predictions("teacher", teacher_eval.deployed)
    sink.log_final(final, info, save() if save is not None else None)
