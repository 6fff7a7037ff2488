"""How the trainer reports what it measures and publishes its files, without knowing where they go.

The job code that wraps the trainer passes a sink that writes to the results store under the job's claim
on the run; tests pass an in-memory one. Files are fenced like rows: the trainer writes a run's checkpoint and
weights only under names the sink gives it, which belong to the writer's own claim (no other writer can hold
them), and publishes each with the rows it belongs to (a checkpoint with its epoch's metrics, the weights with
the final results), in one write the store refuses to a writer that no longer owns the run. What is read back
(resume, a teacher's or a fine-tune source's weights) is only a published file, its SHA-256 checked.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Protocol

import numpy as np

from harness.paths import CHECKPOINT_ROLE as CHECKPOINT, EMA_ROLE as EMA_MODEL, MODEL_ROLE as MODEL, PLAIN_NAMES, RunFile

__all__ = ["CHECKPOINT", "EMA_MODEL", "MODEL", "PLAIN_NAMES", "MemorySink", "MetricSink", "RunFile"]


class MetricSink(Protocol):
    def file_name(self, role: str, epoch: int | None = None) -> str:
        """The name, in the run's folder, under which this writer writes its file of `role` (of `epoch`, for a
        checkpoint): one no other writer of the run can hold."""

    def published(self, role: str, run_dir: Path) -> RunFile | None:
        """The run's file of `role` as last published (the checkpoint to resume from); None when there is none."""

    def log_epoch(self, epoch: int, metrics: Mapping[str, float], checkpoint: RunFile | None = None) -> None:
        """Metrics of one finished epoch (epochs count from 0; called again for a resumed epoch), and the
        checkpoint written after it, published with them. Raises when the run is no longer this writer's."""

    def log_final(self, metrics: Mapping[str, float], info: Mapping[str, str],
                  files: Mapping[str, RunFile] | None = None) -> None:
        """Final numeric metrics, text facts beside them (device name, throughput dtype...), and the final
        weights by role, published with them."""

    def log_predictions(self, name: str, predictions: np.ndarray) -> None:
        """Val-set predicted class indices of one head ('cls', 'dist', 'avg', 'teacher', 'target')."""


class MemorySink:
    """Keeps everything in lists: for tests and notebooks. Its run has one writer and no store: a file is
    published by renaming it to its plain name (checkpoint.pt, model.pt, model_ema.pt)."""

    def __init__(self) -> None:
        self.epochs: dict[int, dict[str, float]] = {}
        self.final: dict[str, float] = {}
        self.info: dict[str, str] = {}
        self.predictions: dict[str, np.ndarray] = {}

    def file_name(self, role: str, epoch: int | None = None) -> str:
        return f"{PLAIN_NAMES[role]}.unpublished"

    def published(self, role: str, run_dir: Path) -> RunFile | None:
        path = Path(run_dir) / PLAIN_NAMES[role]
        return RunFile(path, None) if path.exists() else None

    def log_epoch(self, epoch: int, metrics: Mapping[str, float], checkpoint: RunFile | None = None) -> None:
        self.epochs[epoch] = dict(metrics)
        if checkpoint is not None:
            _publish(checkpoint, CHECKPOINT)

    def log_final(self, metrics: Mapping[str, float], info: Mapping[str, str],
                  files: Mapping[str, RunFile] | None = None) -> None:
        self.final.update(metrics)
        self.info.update(info)
        for role, file in (files or {}).items():
            _publish(file, role)

    def log_predictions(self, name: str, predictions: np.ndarray) -> None:
        self.predictions[name] = np.asarray(predictions)


def _publish(file: RunFile, role: str) -> None:
    os.replace(file.path, file.path.with_name(PLAIN_NAMES[role]))
