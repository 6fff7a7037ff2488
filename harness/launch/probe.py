"""Time training steps of a run's model on this machine: a speed basis for runs nothing stored yet.

`probe(config)` times the trainer's own training step of the run (`harness.trainer.probe.training_step`: the run's
student, and its teacher with random weights, Mixup/CutMix, the run's loss with the teacher's forward, backward,
clipping, the optimizer and EMA updates) on random images of the run's resolution at its per-process batch size,
after `WARMUP` untimed steps, never compiled. It times
steps until it has at least `MIN_STEPS` of them and `MIN_SECONDS` of timing: on a machine shared with other
processes a few steps vary several-fold, a few seconds of them much less. The median
step counts, and the spread between steps (the middle half, relative to the median) says how noisy the machine
was. Data loading and evaluation are not timed. Imports torch and the trainer, so only `--probe` loads it.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from harness.config import RunConfig

# classes of each dataset (the classifier's width; imagefolder: ImageNet's unless its folder says otherwise)
NUM_CLASSES = {"digits": 10, "fashion_mnist": 10, "synthetic": 1000, "imagefolder": 1000}


def num_classes(config: RunConfig) -> int:
    root = Path(config.data.root) / "train" if config.data.root else None
    if config.data.name == "imagefolder" and root is not None and root.is_dir():
        return sum(1 for p in root.iterdir() if p.is_dir())
    return NUM_CLASSES.get(config.data.name, 1000)


# untimed first steps: memory allocation, kernel selection, lazy initialisation
WARMUP = 2
# timed steps and seconds of timing: the probe stops once it has both
MIN_STEPS = 5
MIN_SECONDS = 3.0


def probe_length() -> str:
    """What a probe costs, in words a user plans by (a step of the paper's batch on a CPU takes seconds)."""
    return (f"{WARMUP + MIN_STEPS} training steps and at least {MIN_SECONDS:g} s a model: seconds on a GPU, "
            "minutes a model on a busy CPU")


@dataclass(frozen=True)
class Probe:
    """Training images/s of one process (the median step), the steps timed, and how much they varied."""

    img_s: float
    steps: int
    seconds: float
    # the middle half of the step times (25th to 75th percentile), relative to the median
    spread: float


def probe(config: RunConfig, world_size: int = 1, threads: int | None = None,
          min_seconds: float = MIN_SECONDS) -> Probe:
    """Time the run's training step on this machine (see the module docstring)."""
    import torch

    from harness.trainer.probe import training_step

    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        # fine-tuning starts from weights that need not exist yet; its speed does not depend on them. And no
        # torch.compile: compiling takes minutes of the planning machine, and a few seconds of steps after it
        # would time its warm-up, not its speed (the estimate says the timing is uncompiled)
        config = config.model_copy(update={"finetune": None, "compile": False})
        batch = max(2, config.batch_size // world_size)
        step = training_step(config, num_classes(config), batch)
        seconds: list[float] = []
        began = None
        for done in range(10**9):
            start = time.perf_counter()
            step()
            end = time.perf_counter()
            if done < WARMUP:
                continue
            began = began if began is not None else start
            seconds.append(end - start)
            spent = end - began
            if len(seconds) >= MIN_STEPS and spent >= min_seconds:
                break
        median = statistics.median(seconds)
        q1, _, q3 = statistics.quantiles(seconds, n=4) if len(seconds) > 1 else (median, median, median)
        return Probe(batch / median, len(seconds), sum(seconds), (q3 - q1) / median)
    finally:
        torch.set_num_threads(previous)

