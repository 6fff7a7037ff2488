"""The smallest spec that really trains (a tiny convnet, 64 scikit-learn digits at 16 px, CPU): seconds a run."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def tiny_spec(name: str, epochs: int = 1, seeds: tuple[int, ...] = (0,)) -> str:
    return f"""
name: {name}
base:
  data: {{name: digits, img_size: 16, num_workers: 0, train_subset: 64}}
  model.name: resnet_tiny_32
  device: cpu
  batch_size: 32
  eval_batch_size: 200
  schedule: {{epochs: {epochs}, warmup_epochs: 0}}
  augment: {{auto_augment: null, random_erasing: 0.0, repeated_aug: false, mixup: 0.0, cutmix: 0.0}}
  throughput: {{protocols: []}}
seeds: [{", ".join(map(str, seeds))}]
"""


def harness_env(**extra: str) -> dict[str, str]:
    """The environment a `harness` subprocess of a test runs with: offline, one thread, unbuffered."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra}
