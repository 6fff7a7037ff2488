"""The trainer's entry point for timing a run's step elsewhere: a real training step of the run, no data."""

from __future__ import annotations

import math

from harness.config import RunConfig
from harness.trainer.probe import training_step


def test_a_probe_step_trains_the_runs_student_with_its_teacher():
    config = RunConfig.model_validate({
        "model": {"name": "deit_tiny_patch4_32", "distillation_token": True},
        "data": {"name": "digits", "img_size": 16, "num_workers": 0}, "batch_size": 8, "device": "cpu",
        "augment": {"repeated_aug": False},
        "distillation": {"kind": "hard", "teacher": {"model": "resnet_tiny_32", "checkpoint": "none.pt"}}})
    step = training_step(config, num_classes=10, batch=4)
    losses = [step(), step()]
    assert all(math.isfinite(loss) and loss > 0 for loss in losses)
