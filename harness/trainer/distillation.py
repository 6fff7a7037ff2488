"""Knowledge distillation loss of DeiT (Touvron et al. 2021, Section 4), with the reference code's semantics.

    loss = (1 - alpha) * base(outputs, labels) + alpha * distill

- soft: KL(log_softmax(student / tau) || log_softmax(teacher / tau)) with log-targets, summed, scaled by tau^2 and
  divided by the number of logits (`outputs_kd.numel()`), exactly as facebookresearch/deit's `losses.py`;
- hard: cross-entropy against the teacher's argmax.

The teacher sees the same (augmented, mixed) `inputs` as the student, without gradients. `outputs` is the
student's output: a tensor (class token only) or the `(class, distillation)` pair of a distillation-token
model. The base loss reads the class head; the distillation term reads the distillation head when there is one
and the class head otherwise (the reference code refuses a plain tensor; the paper's Table 3 rows
"usual/hard distillation" without a distillation token need it).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

DistillationKind = Literal["none", "soft", "hard"]


class DistillationLoss(nn.Module):
    def __init__(
        self,
        base_criterion: nn.Module,
        teacher_model: nn.Module | None,
        distillation_type: DistillationKind,
        alpha: float,
        tau: float,
    ) -> None:
        super().__init__()
        if distillation_type not in ("none", "soft", "hard"):
            raise ValueError(f"distillation_type must be none, soft or hard, not {distillation_type!r}")
        if distillation_type != "none" and teacher_model is None:
            raise ValueError(f"distillation '{distillation_type}' needs a teacher model")
        self.base_criterion = base_criterion
        self.teacher_model = teacher_model
        self.distillation_type = distillation_type
        self.alpha = alpha
        self.tau = tau

    def forward(self, inputs: torch.Tensor, outputs, labels: torch.Tensor) -> torch.Tensor:
        if isinstance(outputs, (tuple, list)):
            outputs, outputs_kd = outputs
        else:
            outputs_kd = outputs
        base_loss = self.base_criterion(outputs, labels)
        if self.distillation_type == "none":
            return base_loss

        assert self.teacher_model is not None  # __init__ refuses a distillation without a teacher
        with torch.no_grad():
            teacher_outputs = self.teacher_model(inputs)
        teacher_outputs = teacher_outputs.to(outputs_kd.dtype)

        if self.distillation_type == "soft":
            T = self.tau
            distillation_loss = (
                F.kl_div(
                    F.log_softmax(outputs_kd / T, dim=1),
                    F.log_softmax(teacher_outputs / T, dim=1),
                    reduction="sum",
                    log_target=True,
                )
                * (T * T)
                / outputs_kd.numel()
            )
        else:
            distillation_loss = F.cross_entropy(outputs_kd, teacher_outputs.argmax(dim=1))

        return base_loss * (1 - self.alpha) + distillation_loss * self.alpha
