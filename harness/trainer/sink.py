"""How the trainer reports what it measures, without knowing where it goes.

The job code that wraps the trainer passes a sink that writes to the results store under the job's claim
on the run; tests pass an in-memory one. The sink also says whether the run's files may be replaced: a job
whose run was taken over by another launch must not rename its checkpoint or weights over theirs.
"""

from __future__ import annotations

from typing import Mapping, Protocol

import numpy as np


class MetricSink(Protocol):
    def log_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        """Metrics of one finished epoch (epochs count from 0); called again for a resumed epoch."""

    def log_final(self, metrics: Mapping[str, float], info: Mapping[str, str]) -> None:
        """Final numeric metrics, and text facts beside them (device name, throughput dtype...)."""

    def log_predictions(self, name: str, predictions: np.ndarray) -> None:
        """Val-set predicted class indices of one head ('cls', 'dist', 'avg', 'teacher', 'target')."""

    def may_replace_files(self, wait: bool) -> bool:
        """Asked just before a new checkpoint or weights file is renamed over the run's: True when it may be.
        False, and the file is left as it is, when that cannot be told now and `wait` is False (the results
        store is out of reach: a checkpoint can wait for the next epoch). Raises when the run is no longer this
        writer's: the exception ends the training."""


class MemorySink:
    """Keeps everything in lists: for tests and notebooks."""

    def __init__(self) -> None:
        self.epochs: dict[int, dict[str, float]] = {}
        self.final: dict[str, float] = {}
        self.info: dict[str, str] = {}
        self.predictions: dict[str, np.ndarray] = {}

    def log_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        self.epochs[epoch] = dict(metrics)

    def log_final(self, metrics: Mapping[str, float], info: Mapping[str, str]) -> None:
        self.final.update(metrics)
        self.info.update(info)

    def log_predictions(self, name: str, predictions: np.ndarray) -> None:
        self.predictions[name] = np.asarray(predictions)

    def may_replace_files(self, wait: bool) -> bool:
        return True
