"""The trainer: one resolved run config in, metrics out (through a `MetricSink`), weights on disk.

    from harness.trainer import train, DistillationLoss, TrainingDiverged, RunStopped
"""

from harness.trainer.checkpoint import CheckpointError
from harness.trainer.distillation import DistillationLoss
from harness.trainer.loop import RunStopped, TrainingDiverged, train

__all__ = ["CheckpointError", "DistillationLoss", "RunStopped", "TrainingDiverged", "train"]
