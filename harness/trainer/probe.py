"""A run's training step, for timing outside a run (`harness.launch.probe`): the trainer's entry point for it.

`training_step` builds the run's student (and, when it distils, its teacher with random weights) with the
trainer's own builders and returns the trainer's own step (`loop.train_step`: Mixup/CutMix, the run's loss with
the teacher's forward, backward, clipping, the optimizer and EMA updates) on one random batch at the run's
resolution; no data, store or checkpoint. `create_model` and `student_name` build and name a run's models the
trainer's way, for the dry run's memory plan (`harness.launch.memory`).
"""

from __future__ import annotations

from typing import Callable

import torch

from harness.config import RunConfig
from harness.paths import RunFile
from harness.trainer import distributed
from harness.trainer.loop import assemble, resolve_device, train_step
# create_model and student_name are also the entry points the dry run's memory plan builds models with
from harness.trainer.models import build_student, create_model, student_name  # noqa: F401


def training_step(config: RunConfig, num_classes: int, batch: int) -> Callable[[], float]:
    """One training step of `config` on a fixed random batch of `batch` images per call, returning its loss once
    the device has finished it. The config must not fine-tune from weights (`finetune: None`)."""
    device = resolve_device(config)
    model = build_student(config, num_classes, _no_run_files).to(device)
    teacher, named = None, config.distillation.teacher
    if config.distillation.kind != "none" and named is not None:
        teacher = create_model(named.model, num_classes, config.data.img_size)
        teacher = teacher.to(device).eval().requires_grad_(False)
    run = assemble(config, distributed.DistEnv(), device, model, teacher, num_classes)
    run.train_model.train()
    size = config.data.img_size
    images = torch.randn(batch, 3, size, size, device=device)
    targets = torch.randint(0, num_classes, (batch,), device=device)

    def step() -> float:
        return float(train_step(run, images, targets))  # reading the loss waits for the device

    return step


def _no_run_files(run_hash: str, role: str) -> RunFile:
    raise FileNotFoundError(f"a timed step reads no run's {role} weights (run {run_hash[:10]})")
