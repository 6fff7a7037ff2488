"""DistillationLoss against hand-computed values for none / soft / hard (the DeiT reference semantics)."""

import math

import pytest
import torch
from torch import nn

from harness.trainer import DistillationLoss


class FixedTeacher(nn.Module):
    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.logits


STUDENT = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
DIST = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 2.0]])
TEACHER = torch.tensor([[1.0, 3.0, 0.0], [0.0, 0.0, 4.0]])
LABELS = torch.tensor([0, 1])
INPUTS = torch.zeros(2, 3, 4, 4)


def ce(logits, labels):
    total = 0.0
    for row, y in zip(logits.tolist(), labels.tolist()):
        total += -row[y] + math.log(sum(math.exp(v) for v in row))
    return total / len(labels)


def soft_kl(student, teacher, tau):
    """sum over all logits of p_t * (log p_t - log p_s) at temperature tau, * tau^2 / numel."""
    total = 0.0
    for s_row, t_row in zip(student.tolist(), teacher.tolist()):
        zs = math.log(sum(math.exp(v / tau) for v in s_row))
        zt = math.log(sum(math.exp(v / tau) for v in t_row))
        for s, t in zip(s_row, t_row):
            log_ps, log_pt = s / tau - zs, t / tau - zt
            total += math.exp(log_pt) * (log_pt - log_ps)
    return total * tau * tau / student.numel()


def test_none_is_the_base_loss_and_does_not_call_the_teacher():
    teacher = FixedTeacher(TEACHER)
    loss = DistillationLoss(nn.CrossEntropyLoss(), teacher, "none", 0.5, 1.0)
    assert loss(INPUTS, STUDENT, LABELS).item() == pytest.approx(ce(STUDENT, LABELS), rel=1e-6)
    assert teacher.calls == 0


@pytest.mark.parametrize("tau,alpha", [(1.0, 0.5), (3.0, 0.1)])
def test_soft_with_a_class_token_only(tau, alpha):
    loss = DistillationLoss(nn.CrossEntropyLoss(), FixedTeacher(TEACHER), "soft", alpha, tau)
    expected = (1 - alpha) * ce(STUDENT, LABELS) + alpha * soft_kl(STUDENT, TEACHER, tau)
    assert loss(INPUTS, STUDENT, LABELS).item() == pytest.approx(expected, rel=1e-5)


def test_soft_reads_the_distillation_head():
    loss = DistillationLoss(nn.CrossEntropyLoss(), FixedTeacher(TEACHER), "soft", 0.5, 3.0)
    expected = 0.5 * ce(STUDENT, LABELS) + 0.5 * soft_kl(DIST, TEACHER, 3.0)
    assert loss(INPUTS, (STUDENT, DIST), LABELS).item() == pytest.approx(expected, rel=1e-5)


def test_hard_uses_the_teacher_argmax():
    loss = DistillationLoss(nn.CrossEntropyLoss(), FixedTeacher(TEACHER), "hard", 0.5, 1.0)
    teacher_labels = torch.tensor([1, 2])
    expected = 0.5 * ce(STUDENT, LABELS) + 0.5 * ce(DIST, teacher_labels)
    assert loss(INPUTS, (STUDENT, DIST), LABELS).item() == pytest.approx(expected, rel=1e-6)
    expected_cls_only = 0.5 * ce(STUDENT, LABELS) + 0.5 * ce(STUDENT, teacher_labels)
    assert loss(INPUTS, STUDENT, LABELS).item() == pytest.approx(expected_cls_only, rel=1e-6)


def test_teacher_gets_no_gradient_and_student_does():
    teacher = nn.Linear(3, 3)
    student = STUDENT.clone().requires_grad_(True)
    loss = DistillationLoss(nn.CrossEntropyLoss(), teacher, "soft", 0.5, 2.0)
    loss(torch.randn(2, 3), student, LABELS).backward()
    assert student.grad is not None
    assert all(p.grad is None for p in teacher.parameters())


def test_bad_kind_and_missing_teacher():
    with pytest.raises(ValueError):
        DistillationLoss(nn.CrossEntropyLoss(), None, "soft", 0.5, 1.0)
    with pytest.raises(ValueError):
        DistillationLoss(nn.CrossEntropyLoss(), FixedTeacher(TEACHER), "medium", 0.5, 1.0)
