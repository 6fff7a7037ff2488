"""How the trainer reports what it measures, without knowing where it goes.

The job code that wraps the trainer passes a sink that writes to the results store;
tests pass an in-memory one.
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
