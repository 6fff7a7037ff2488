"""Time a few training steps of a run's model on this machine: a speed basis for runs nothing stored yet.

`probe_img_s(config)` builds the run's student (and, when it distils, its teacher with random weights) with the
trainer's own builders, and times `steps` training steps after `WARMUP` untimed ones: forward, Mixup/CutMix, the
run's loss (the teacher's forward included), backward and the optimizer step, on random images of the run's
resolution at its per-process batch size. The median step counts: one step slowed by a neighbour's process (a
shared machine) or a first-use kernel choice moves it little. Data loading, augmentation and evaluation are not
timed. Imports torch and the trainer, so only `harness run --dry-run --probe` loads it.
"""

from __future__ import annotations

import statistics
import time
from contextlib import nullcontext
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
STEPS = 5


def probe_img_s(config: RunConfig, world_size: int = 1, steps: int = STEPS, threads: int | None = None) -> float:
    """Training images/s of one process of `config` on this machine (see the module docstring)."""
    import torch

    from harness.trainer.loop import resolve_device
    from harness.trainer.models import build_student, create_model
    from harness.trainer.optim import build_criterion, build_mixup, build_optimizer

    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        # fine-tuning starts from weights that need not exist yet; its speed does not depend on them
        config = config.model_copy(update={"finetune": None})
        device = resolve_device(config)
        classes = num_classes(config)
        model = build_student(config, classes, lambda run: Path(run)).to(device).train()
        teacher = None
        if config.distillation.kind != "none" and config.distillation.teacher is not None:
            teacher = create_model(config.distillation.teacher.model, classes, config.data.img_size)
            teacher = teacher.to(device).eval().requires_grad_(False)
        optimizer = build_optimizer(config, model)
        mixup = build_mixup(config, classes)
        criterion = build_criterion(config, mixup, teacher)
        batch = max(2, config.batch_size // world_size)
        size = config.data.img_size
        images = torch.randn(batch, 3, size, size, device=device)
        targets = torch.randint(0, classes, (batch,), device=device)
        seconds = []
        for step in range(WARMUP + steps):
            start = time.perf_counter()
            x, y = mixup(images, targets) if mixup is not None else (images, targets)
            bf16 = config.precision == "bf16"
            with torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext():
                loss = criterion(x, model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if step >= WARMUP:
                seconds.append(time.perf_counter() - start)
        return batch / statistics.median(seconds)
    finally:
        torch.set_num_threads(previous)
