"""The trainer: one resolved run config in, metrics out (through a `MetricSink`), weights on disk.

    from harness.trainer import train, DistillationLoss, TrainingDiverged
"""

from harness.trainer.distillation import DistillationLoss
from harness.trainer.loop import TrainingDiverged, train

__all__ = ["DistillationLoss", "TrainingDiverged", "train"]
