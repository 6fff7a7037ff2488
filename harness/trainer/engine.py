"""Train one resolved run config: the DeiT recipe (Touvron et al. 2021, Table 9), switch for switch.

`train(config, run_dir, sink, resolve_run_dir)` builds the data, the student (by timm name, or its
distillation-token twin), the teacher, AdamW/SGD with timm's cosine schedule, Mixup/CutMix, label smoothing,
EMA and the distillation loss; trains with a checkpoint written atomically every epoch (and resumes from it);
evaluates every epoch (class head, distillation head and their average for a distillation-token model, and the
EMA weights); reports through a `MetricSink`; and writes the final weights to `run_dir/model.pt`.

Where we differ from the reference code (facebookresearch/deit, main.py):
- repeated augmentation also runs in a single process (the reference silently drops it there);
- the distillation loss accepts a class-token-only student (the paper's Table 3 rows need it);
- distillation is allowed while fine-tuning (the paper's DeiT⚗↑384 rows need it);
- the learning-rate schedule is stepped at the start of each epoch (`step(epoch)`), so epoch 1 already uses the
  rate after one epoch of warm-up (the reference steps `step(epoch)` after the epoch, repeating the first rate).
"""

from __future__ import annotations

import copy
import math
import os
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import timm
import torch
import torch.nn.functional as F
from timm.data import Mixup
from timm.layers import resample_abs_pos_embed
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from timm.utils import ModelEmaV3
from torch import nn

import harness.models  # noqa: F401  (registers the tiny 32-px models in timm before any create_model)
from harness.config import RunConfig
from harness.registry import check_model, distilled_twin
from harness.trainer import distributed
from harness.trainer.data import build_dataset, build_eval_loader, build_train_loader
from harness.trainer.distillation import DistillationLoss
from harness.trainer.measure import count_flops, count_params, measure_throughput, peak_memory_mb
from harness.trainer.sink import MetricSink

CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"
EMA_MODEL = "model_ema.pt"


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite; the message says when."""


class RunStopped(RuntimeError):
    """`should_stop` asked the training to stop; the message says why."""


# ---------------------------------------------------------------------------------------------------------------
# models


def resolve_device(config: RunConfig, local_rank: int = 0) -> torch.device:
    if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def create_model(name: str, num_classes: int, img_size: int, **kwargs) -> nn.Module:
    """timm.create_model, passing img_size to the models that take it (ViTs) and not to the others (convnets)."""
    check_model(name)
    try:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, img_size=img_size, **kwargs)
    except TypeError:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)


def student_name(config: RunConfig) -> str:
    name = config.model.name
    return distilled_twin(name) if config.model.distillation_token else check_model(name)


def is_distilled(model: nn.Module) -> bool:
    return hasattr(model, "head_dist") and hasattr(model, "set_distilled_training")


def load_state(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a file: our model.pt, our checkpoint.pt, or a {'model': state_dict} checkpoint."""
    if not path.exists():
        raise FileNotFoundError(f"weights file not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "state_dict", "model_ema"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            return state[key]
    return state


def adapt_state(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Bicubic interpolation of the absolute position embeddings when the resolution (token grid) differs."""
    state = dict(state)
    if "pos_embed" in state and hasattr(model, "pos_embed"):
        old, new = state["pos_embed"], model.pos_embed
        if old.shape != new.shape:
            prefix = getattr(model, "num_prefix_tokens", 1)
            state["pos_embed"] = resample_abs_pos_embed(
                old, new_size=list(model.patch_embed.grid_size), num_prefix_tokens=prefix,
                interpolation="bicubic", antialias=False,
            )
    return state


CLASSIFIERS = ("head", "head_dist", "fc", "classifier")


def load_finetune_state(model: nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Load pre-trained weights for fine-tuning; a classifier sized for other classes (transfer to another
    dataset, the paper's Table 7) is left freshly initialised. Returns the keys left out."""
    own = model.state_dict()
    dropped = [k for k, v in state.items()
               if k.split(".")[0] in CLASSIFIERS and k in own and own[k].shape != v.shape]
    state = {k: v for k, v in state.items() if k not in dropped}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or set(missing) - set(dropped):
        raise RuntimeError(f"fine-tuning weights do not fit {type(model).__name__}: missing {sorted(missing)}, "
                           f"unexpected {sorted(unexpected)}")
    return dropped


def load_teacher(config: RunConfig, num_classes: int, resolve_run_dir: Callable[[str], Path],
                 device: torch.device) -> nn.Module:
    t = config.distillation.teacher
    path = resolve_run_dir(t.run) / MODEL if t.run else Path(t.checkpoint)
    state = load_state(path)
    name = t.model
    if "dist_token" in state and "_distilled_" not in name:
        name = distilled_twin(name)
    teacher = create_model(name, num_classes, config.data.img_size)
    teacher.load_state_dict(adapt_state(state, teacher))
    teacher.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def build_student(config: RunConfig, num_classes: int, resolve_run_dir: Callable[[str], Path]) -> nn.Module:
    model = create_model(
        student_name(config), num_classes, config.data.img_size,
        drop_rate=config.model.dropout, drop_path_rate=config.model.drop_path,
    )
    if config.finetune is not None:
        f = config.finetune
        path = resolve_run_dir(f.from_run) / MODEL if f.from_run else Path(f.checkpoint)
        load_finetune_state(model, adapt_state(load_state(path), model))
    if is_distilled(model):
        model.set_distilled_training(True)
    return model


# ---------------------------------------------------------------------------------------------------------------
# optimisation


def scaled_lr(config: RunConfig) -> float:
    return config.optimizer.base_lr * config.batch_size / 512


def build_optimizer(config: RunConfig, model: nn.Module) -> torch.optim.Optimizer:
    """timm's optimizer factory (no weight decay on biases, norms and tokens, as the reference)."""
    o = config.optimizer
    kwargs = dict(lr=scaled_lr(config), weight_decay=o.weight_decay)
    if o.name == "adamw":
        kwargs["eps"] = o.eps
    else:
        kwargs["momentum"] = o.momentum
    return create_optimizer_v2(model, opt=o.name, **kwargs)


def build_scheduler(config: RunConfig, optimizer: torch.optim.Optimizer) -> CosineLRScheduler:
    s = config.schedule
    return CosineLRScheduler(
        optimizer, t_initial=s.epochs, lr_min=s.min_lr, warmup_lr_init=s.warmup_lr, warmup_t=s.warmup_epochs,
        cycle_limit=1, t_in_epochs=True,
    )


def build_mixup(config: RunConfig, num_classes: int) -> Mixup | None:
    a = config.augment
    if (a.mixup <= 0 and a.cutmix <= 0) or a.mixup_prob <= 0:
        return None
    return Mixup(
        mixup_alpha=a.mixup, cutmix_alpha=a.cutmix, prob=a.mixup_prob, switch_prob=a.mixup_switch_prob,
        mode="batch", label_smoothing=a.label_smoothing, num_classes=num_classes,
    )


def build_criterion(config: RunConfig, mixup: Mixup | None, teacher: nn.Module | None) -> DistillationLoss:
    if mixup is not None:
        base: nn.Module = SoftTargetCrossEntropy()  # Mixup already smooths the labels
    elif config.augment.label_smoothing > 0:
        base = LabelSmoothingCrossEntropy(smoothing=config.augment.label_smoothing)
    else:
        base = nn.CrossEntropyLoss()
    d = config.distillation
    return DistillationLoss(base, teacher, d.kind, d.alpha, d.tau)


# ---------------------------------------------------------------------------------------------------------------
# evaluation


def head_logits(model: nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Logits per head: {'cls'} for a plain model; {'cls', 'dist', 'avg'} for a distillation-token model."""
    if is_distilled(model):
        feats = model.forward_features(images)
        cls = model.head(feats[:, 0])
        dist = model.head_dist(feats[:, 1])
        return {"cls": cls, "dist": dist, "avg": (cls + dist) / 2}
    return {"cls": model(images)}


@dataclass
class EvalResult:
    metrics: dict[str, float]
    # head -> predicted class per val image (in val-set order)
    predictions: dict[str, np.ndarray] = field(default_factory=dict)
    targets: np.ndarray | None = None


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: torch.device, autocast, shard: np.ndarray | None = None,
             prefix: str = "") -> EvalResult:
    """top-1/top-5 (percent) and val loss; `top1`/`top5`/`val_loss` read the deployed prediction (the average
    of both heads for a distillation-token model). Under several processes each evaluates a shard and the
    per-image results are gathered."""
    was_training = model.training
    model.eval()
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
    model.train(was_training)
    per_image = {
        "loss": torch.cat(losses), "target": torch.cat(targets), **{h: torch.cat(v) for h, v in top5.items()}
    }
    if distributed.world_size() > 1:
        per_image = distributed.gather_shards(per_image, shard)
    target = per_image["target"]
    metrics = {f"{prefix}val_loss": float(per_image["loss"].mean())} if not prefix else {}
    predictions = {}
    for head in top5:
        pred = per_image[head]
        correct = pred == target[:, None]
        acc1 = float(correct[:, 0].float().mean() * 100)
        acc5 = float(correct.any(dim=1).float().mean() * 100)
        predictions[head] = pred[:, 0].numpy()
        deployed = head == ("avg" if "avg" in top5 else "cls")
        if deployed:
            metrics[f"{prefix}top1"], metrics[f"{prefix}top5"] = acc1, acc5
        if not prefix and head in ("cls", "dist") and "avg" in top5:
            metrics[f"top1_{head}"], metrics[f"top5_{head}"] = acc1, acc5
    return EvalResult(metrics, predictions, target.numpy())


def compact(pred: np.ndarray, num_classes: int) -> np.ndarray:
    dtype = np.uint8 if num_classes <= 256 else (np.int16 if num_classes <= 32767 else np.int32)
    return pred.astype(dtype)


# ---------------------------------------------------------------------------------------------------------------
# checkpoints


def rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), np_state[2], np_state[3], np_state[4]],
        "python": random.getstate(),
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))


def save_atomic(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------------------------------------------
# the run


def _autocast_factory(config: RunConfig, device: torch.device):
    if config.precision == "bf16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext


def train(config: RunConfig, run_dir: Path, sink: MetricSink, resolve_run_dir: Callable[[str], Path],
          should_stop: Callable[[], str | None] | None = None) -> dict[str, float]:
    """Train one run (resuming from `run_dir/checkpoint.pt` if present); returns the final metrics."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    env = distributed.setup(config)
    try:
        return _train(config, run_dir, sink, resolve_run_dir, env, should_stop or (lambda: None))
    finally:
        distributed.cleanup(env)


def _train(config: RunConfig, run_dir: Path, sink: MetricSink, resolve_run_dir, env: distributed.DistEnv,
           should_stop: Callable[[], str | None]) -> dict[str, float]:
    device = resolve_device(config, env.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.cuda.reset_peak_memory_stats(device)
        torch.backends.cudnn.benchmark = True
    is_main = env.rank == 0
    autocast = _autocast_factory(config, device)
    pin = device.type == "cuda"

    splits = build_dataset(config)
    num_classes = splits.num_classes
    if config.batch_size % env.world_size:
        raise ValueError(f"batch_size {config.batch_size} is not divisible by {env.world_size} processes")
    train_loader = build_train_loader(config, splits, config.batch_size // env.world_size, env.world_size,
                                      env.rank, pin_memory=pin, device=device)
    if len(train_loader) == 0:
        raise ValueError(f"batch_size {config.batch_size} is larger than the training set ({len(splits.train)} images)")
    val_shard = np.arange(env.rank, len(splits.val), env.world_size) if env.world_size > 1 else None
    val_loader = build_eval_loader(config, splits.val, splits.in_memory, config.eval_batch_size, val_shard, pin, device)

    # seeded after the data are built: a first import inside a dataset builder (scikit-learn) may draw from numpy
    seed_everything(config.seed + env.rank)
    model = build_student(config, num_classes, resolve_run_dir).to(device)
    teacher = None
    if config.distillation.kind != "none":
        teacher = load_teacher(config, num_classes, resolve_run_dir, device)
    ema = ModelEmaV3(model, decay=config.ema.decay) if config.ema.enabled else None
    unused_head = is_distilled(model) and config.distillation.kind == "none"
    train_model = distributed.wrap(model, env, device, find_unused=unused_head)

    optimizer = build_optimizer(config, model)
    scheduler = build_scheduler(config, optimizer)
    mixup = build_mixup(config, num_classes)
    criterion = build_criterion(config, mixup, teacher)

    history: list[dict[str, float]] = []
    start_epoch, train_time, train_samples = 0, 0.0, 0
    ckpt_path = run_dir / CHECKPOINT
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if ema is not None and ckpt.get("ema") is not None:
            ema.module.load_state_dict(ckpt["ema"])
        history = list(ckpt["history"])
        start_epoch = ckpt["epoch"] + 1
        train_time, train_samples = ckpt["train_time_s"], ckpt["train_samples"]
        set_rng_state(ckpt["rng"][env.rank] if env.rank < len(ckpt["rng"]) else ckpt["rng"][0])

    teacher_result = None
    if teacher is not None:
        teacher_result = evaluate(teacher, val_loader, device, autocast, val_shard, prefix="teacher_")

    last_eval: EvalResult | None = None
    for epoch in range(start_epoch, config.schedule.epochs):
        scheduler.step(epoch)
        train_loader.sampler.set_epoch(epoch)
        train_model.train()
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        steps, samples = 0, 0
        for step, (images, targets) in enumerate(train_loader):
            reason = should_stop()
            if reason:
                raise RunStopped(reason)
            images = images.to(device, non_blocking=True)
            targets = targets.to(device, non_blocking=True)
            if mixup is not None:
                images, targets = mixup(images, targets)
            with autocast():
                outputs = train_model(images)
                loss = criterion(images, outputs, targets)
            loss_value = loss.detach()
            if device.type == "cpu" or step % 20 == 0:
                if not math.isfinite(loss_value.item()):
                    raise TrainingDiverged(
                        f"loss is {loss_value.item()} at epoch {epoch}, step {step} (lr {optimizer.param_groups[0]['lr']:.3g})"
                    )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.optimizer.clip_grad is not None:
                nn.utils.clip_grad_norm_(model.parameters(), config.optimizer.clip_grad)
            optimizer.step()
            if ema is not None:
                ema.update(model)
            loss_sum += loss_value.float()
            steps += 1
            samples += images.shape[0]
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        epoch_time = time.perf_counter() - t0
        train_time += epoch_time
        train_samples += samples * env.world_size
        mean_loss = float(distributed.mean(loss_sum / max(steps, 1)))
        if not math.isfinite(mean_loss):
            raise TrainingDiverged(f"loss is {mean_loss} in epoch {epoch}")

        last_eval = evaluate(model, val_loader, device, autocast, val_shard)
        metrics = {"train_loss": mean_loss, "lr": optimizer.param_groups[0]["lr"], **last_eval.metrics,
                   "train_img_s": samples * env.world_size / epoch_time}
        if ema is not None:
            metrics.update(evaluate(ema.module, val_loader, device, autocast, val_shard, prefix="ema_").metrics)
        history.append(metrics)
        if is_main:
            sink.log_epoch(epoch, metrics)
        rngs = distributed.gather_objects(rng_state())
        if is_main:
            save_atomic(
                {
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "ema": ema.module.state_dict() if ema is not None else None,
                    "epoch": epoch, "history": history, "train_time_s": train_time, "train_samples": train_samples,
                    "rng": rngs,
                },
                ckpt_path,
            )
        distributed.barrier()

    if last_eval is None:  # resumed after the last epoch: evaluate the stored weights again for the predictions
        last_eval = evaluate(model, val_loader, device, autocast, val_shard)

    final = dict(history[-1]) if history else dict(last_eval.metrics)
    if teacher_result is not None:
        final["teacher_top1"] = teacher_result.metrics["teacher_top1"]
    if not is_main:
        return final

    torch.save(model.state_dict(), run_dir / MODEL)
    if ema is not None:
        torch.save(ema.module.state_dict(), run_dir / EMA_MODEL)

    final["params"] = float(count_params(model))
    final["flops"] = float(count_flops(model, config.data.img_size, device))
    final["train_time_s"] = train_time
    final["train_img_s"] = train_samples / train_time if train_time > 0 else float("nan")
    info = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "model": student_name(config),
        "world_size": str(env.world_size),
        "flops_counter": "torch.utils.flop_counter, 2 FLOPs per multiply-add",
        "top1_unit": "percent",
    }
    for protocol in config.throughput.protocols:
        tp = measure_throughput(copy.deepcopy(model), config.data.img_size, device, protocol,
                                config.throughput.batch_size, config.throughput.repeats)
        final[f"throughput_{protocol}_img_s"] = tp.img_s
        info[f"throughput_batch_{protocol}"] = str(tp.batch_size)
        info[f"throughput_dtype_{protocol}"] = tp.dtype
        if protocol == "fast":
            info["throughput_compiled_fast"] = str(tp.compiled)
    if "paper" in config.throughput.protocols:
        info["throughput_batch"] = info["throughput_batch_paper"]
    final["peak_mem_mb"] = peak_memory_mb(device)

    sink.log_predictions("target", compact(last_eval.targets, num_classes))
    for head, pred in last_eval.predictions.items():
        sink.log_predictions(head, compact(pred, num_classes))
    if teacher_result is not None:
        teacher_pred = teacher_result.predictions
        sink.log_predictions("teacher", compact(teacher_pred.get("avg", teacher_pred["cls"]), num_classes))
    sink.log_final(final, info)
    return final
