"""Evaluation on the validation set: top-1/top-5 and loss per head, and each head's per-image predictions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness.trainer import distributed
from harness.trainer.models import is_distilled


def head_logits(model: nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Logits per head: {'cls'} for a plain model; {'cls', 'dist', 'avg'} for a distillation-token model."""
    if is_distilled(model):
        vit: Any = model  # a timm VisionTransformerDistilled: its heads are modules, not the Tensors torch's stub says
        feats = vit.forward_features(images)
        cls = vit.head(feats[:, 0])
        dist = vit.head_dist(feats[:, 1])
        return {"cls": cls, "dist": dist, "avg": (cls + dist) / 2}
    return {"cls": model(images)}


@dataclass
class EvalResult:
    metrics: dict[str, float]
    # head -> predicted class per val image (in val-set order), plain int64
    predictions: dict[str, np.ndarray] = field(default_factory=dict)
    targets: np.ndarray | None = None

    @property
    def deployed(self) -> np.ndarray:
        """The prediction the model ships with: the average of both heads for a distillation-token model."""
        return self.predictions.get("avg", self.predictions["cls"])


def _per_image(model: nn.Module, loader, device: torch.device, autocast) -> dict[str, torch.Tensor]:
    top5: dict[str, list[torch.Tensor]] = {}
    losses, targets = [], []
    for images, target in loader:
        images = images.to(device, non_blocking=True)
        target = target.to(device, non_blocking=True)
        with autocast():
            logits = head_logits(model, images)
        deployed = logits.get("avg", logits["cls"]).float()
        losses.append(F.cross_entropy(deployed, target, reduction="none").cpu())
        targets.append(target.cpu())
        for head, out in logits.items():
            k = min(5, out.shape[1])
            top5.setdefault(head, []).append(out.float().topk(k, dim=1).indices.cpu())
    return {"loss": torch.cat(losses), "target": torch.cat(targets), **{h: torch.cat(v) for h, v in top5.items()}}


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: torch.device, autocast, shard: np.ndarray | None = None,
             prefix: str = "") -> EvalResult:
    """top-1/top-5 (percent) and val loss; `top1`/`top5`/`val_loss` read the deployed prediction (the average
    of both heads for a distillation-token model). Under several processes each evaluates a shard and the
    per-image results are gathered."""
    was_training = model.training
    model.eval()
    per_image = _per_image(model, loader, device, autocast)
    model.train(was_training)
    if distributed.world_size() > 1:
        per_image = distributed.gather_shards(per_image, shard)
    target = per_image["target"]
    heads = [h for h in per_image if h not in ("loss", "target")]
    metrics = {f"{prefix}val_loss": float(per_image["loss"].mean())} if not prefix else {}
    predictions = {}
    for head in heads:
        pred = per_image[head]
        correct = pred == target[:, None]
        acc1 = float(correct[:, 0].float().mean() * 100)
        acc5 = float(correct.any(dim=1).float().mean() * 100)
        predictions[head] = pred[:, 0].numpy().astype(np.int64)
        if head == ("avg" if "avg" in heads else "cls"):
            metrics[f"{prefix}top1"], metrics[f"{prefix}top5"] = acc1, acc5
        if not prefix and head in ("cls", "dist") and "avg" in heads:
            metrics[f"top1_{head}"], metrics[f"top5_{head}"] = acc1, acc5
    return EvalResult(metrics, predictions, target.numpy().astype(np.int64))
