"""Train one resolved run config: `train(config, run_dir, sink, run_files, should_stop=None)`.

The run builds its data, student, teacher and optimisation (`models`, `optim`), resumes from its checkpoint
if there is one (`checkpoint`), then trains epoch by epoch: one pass over the training set
(`train_one_epoch`), an evaluation of the weights and of their EMA (`evaluate`), the metrics to the sink, a
checkpoint, and one progress line on stdout. At the end it saves the weights and reports the final
measurements (`final`). `should_stop`, asked before every training step, ends the run early with `RunStopped`
(the last epoch's checkpoint stays, so running it again resumes).

Where we differ from the reference code (facebookresearch/deit, main.py):
- repeated augmentation also runs in a single process (the reference silently drops it there);
- the distillation loss accepts a class-token-only student (the paper's Table 3 rows need it);
- distillation is allowed while fine-tuning (the paper's DeiT⚗↑384 rows need it);
- the learning-rate schedule is stepped at the start of each epoch (`step(epoch)`), so epoch 1 already uses the
  rate after one epoch of warm-up (the reference steps `step(epoch)` after the epoch, repeating the first rate).
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, cast

import numpy as np
import torch
from timm.data import Mixup
from timm.scheduler.scheduler import Scheduler
from timm.utils import ModelEmaV3
from torch import nn

from harness import registry
from harness.config import RunConfig
from harness.trainer import accumulation, distributed, final, precision
from harness.trainer.checkpoint import resume, rng_state, save_checkpoint, seed_everything
from harness.trainer.datasets import build_dataset, size
from harness.trainer.evaluate import EvalResult, evaluate
from harness.trainer.loaders import build_eval_loader, build_train_loader
from harness.trainer.models import build_student, build_teacher, is_distilled, student_name
from harness.trainer.optim import build_criterion, build_mixup, build_optimizer, build_scheduler
from harness.trainer.loading import RunFiles
from harness.trainer.sink import CHECKPOINT, MetricSink
from harness.words import epoch_of


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite; the message says when."""


class RunStopped(Exception):
    """`should_stop` gave a reason to stop (a cancellation, say); `reason` is its text."""

    def __init__(self, reason: str, epoch: int, step: int) -> None:
        super().__init__(f"stopped at epoch {epoch}, step {step}: {reason}")
        self.reason = reason


StopCheck = Callable[[], str | None]
# under several processes the reason to stop is shared every this many steps (each exchange waits for the GPU)
STOP_SYNC_STEPS = 20


def resolve_device(config: RunConfig, local_rank: int = 0) -> torch.device:
    if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


@dataclass
class Run:
    """Everything one process needs to train and evaluate a run."""

    config: RunConfig
    env: distributed.DistEnv
    device: torch.device
    autocast: Callable
    model: nn.Module
    # the model as trained: wrapped in DDP under several processes, compiled with `compile`; it shares the
    # parameters of `model`, which checkpoints, EMA and evaluation use
    train_model: nn.Module
    ema: ModelEmaV3 | None
    optimizer: torch.optim.Optimizer
    scheduler: Scheduler
    mixup: Mixup | None
    criterion: nn.Module
    # the resolved precision (fp32, bf16, fp16) and fp16's gradient scaler (None otherwise)
    precision: str = "fp32"
    scaler: torch.amp.GradScaler | None = None
    # micro-batches per optimizer step (harness.trainer.accumulation)
    accumulation: int = 1
    # the data: a DataLoader or an InMemoryLoader (harness/trainer/loaders.py), each with a sampler that has
    # set_epoch (None where only training steps are timed: harness.launch.probe)
    train_loader: Any = None
    val_loader: Any = None
    val_shard: np.ndarray | None = None

    def evaluate(self, model: nn.Module, prefix: str = "") -> EvalResult:
        return evaluate(model, self.val_loader, self.device, self.autocast, self.val_shard, prefix=prefix)


@dataclass
class EpochStats:
    loss: float
    samples: int
    seconds: float
    # of `seconds`, the time the loop waited for the loader's next batch (the rest: the steps themselves)
    data_wait_s: float = 0.0


def train(config: RunConfig, run_dir: Path, sink: MetricSink, run_files: RunFiles,
          should_stop: StopCheck | None = None) -> dict[str, float]:
    """Train one run (resuming from the checkpoint the sink says it published); returns the final metrics.
    `run_files(run_hash, role)`: the published weights of another run (a teacher, a fine-tune source).

    `should_stop()` is asked before every training step; a reason (not None) raises `RunStopped`."""
    # the lab's own models and datasets are registered before anything is built
    registry.import_modules(config.imports)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    env = distributed.setup(config)
    try:
        return _train(config, run_dir, sink, run_files, env, should_stop or (lambda: None))
    finally:
        distributed.cleanup(env)


def _device(config: RunConfig, env: distributed.DistEnv) -> torch.device:
    device = resolve_device(config, env.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.cuda.reset_peak_memory_stats(device)
        torch.backends.cudnn.benchmark = True
    return device


def build_run(config: RunConfig, env: distributed.DistEnv, run_files: RunFiles,
              info: dict[str, str]) -> tuple[Run, nn.Module | None]:
    """The run and its teacher (None without distillation); `info` receives where their weights came from."""
    device = _device(config, env)
    pin = device.type == "cuda"
    splits = build_dataset(config)
    if config.batch_size % env.world_size:
        raise ValueError(f"batch_size {config.batch_size} is not divisible by {env.world_size} processes")
    train_loader = build_train_loader(config, splits, config.batch_size // env.world_size, env.world_size,
                                      env.rank, pin_memory=pin, device=device)
    if len(train_loader) == 0:
        raise ValueError(f"batch_size {config.batch_size} is larger than the training set "
                         f"({size(splits.train)} images)")
    val_shard = np.arange(env.rank, size(splits.val), env.world_size) if env.world_size > 1 else None
    val_loader = build_eval_loader(config, splits.val, splits.in_memory, config.eval_batch_size, val_shard, pin, device)

    # seeded after the data are built: a first import inside a dataset builder (scikit-learn) may draw from numpy
    seed_everything(config.seed + env.rank)
    model = build_student(config, splits.num_classes, run_files, info).to(device)
    teacher = None
    if config.distillation.kind != "none":
        teacher = build_teacher(config, splits.num_classes, run_files, device, info)
    run = assemble(config, env, device, model, teacher, splits.num_classes, len(train_loader))
    run.train_loader, run.val_loader, run.val_shard = train_loader, val_loader, val_shard
    per_device = config.batch_size // env.world_size
    if config.accumulation_steps == "auto" and device.type == "cuda":  # on a CPU auto means 1
        run.accumulation = accumulation.choose(per_device, accumulation.probe(run, splits.num_classes,
                                                                              config.data.img_size))
    run.accumulation = accumulation.agree(run.accumulation, device)
    if device.type == "cuda":  # the run's peak memory, not the probe's tries
        torch.cuda.reset_peak_memory_stats(device)
    info.update({"precision": run.precision, "per_device_batch": str(per_device),
                 "micro_batch": str(per_device // run.accumulation), "accumulation_steps": str(run.accumulation)})
    return run, teacher


def assemble(config: RunConfig, env: distributed.DistEnv, device: torch.device, model: nn.Module,
             teacher: nn.Module | None, num_classes: int, steps_per_epoch: int = 1) -> Run:
    """What a training step needs around a built student (and teacher): EMA, optimizer, schedule, Mixup/CutMix,
    the run's loss, the DDP wrapper, the precision; no data (`build_run` adds it, and chooses an `auto`
    accumulation). A horizon in epochs becomes a per-step EMA decay with `steps_per_epoch` (those of one process)."""
    unused_head = is_distilled(model) and config.distillation.kind == "none"
    optimizer = build_optimizer(config, model)
    mixup = build_mixup(config, num_classes)
    train_model = distributed.wrap(model, env, device, find_unused=unused_head)
    # made after DDP has broadcast rank 0's weights: every process starts its EMA from the same weights
    ema = ModelEmaV3(model, decay=config.ema.step_decay(steps_per_epoch)) if config.ema.enabled else None
    if config.compile:
        train_model = cast(nn.Module, torch.compile(train_model))
    resolved = precision.resolve(config, device)
    steps = config.accumulation_steps if config.accumulation_steps != "auto" else 1
    return Run(config, env, device, precision.autocast(resolved, device), model, train_model, ema, optimizer,
               build_scheduler(config, optimizer), mixup, build_criterion(config, mixup, teacher), resolved,
               precision.scaler(resolved, device), steps)


def train_step(run: Run, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """One optimizer step on a process's batch already on the device: Mixup/CutMix over the whole batch, then per
    micro-batch (`run.accumulation`) the run's loss (the teacher's forward included) and backward, gradients
    synchronised between processes at the last one only; then gradient clipping, the optimizer step (through
    fp16's scaler) and the EMA update. Returns the batch's mean loss, detached."""
    if run.mixup is not None:
        images, targets = run.mixup(images, targets)
    run.optimizer.zero_grad(set_to_none=True)
    parts = list(accumulation.slices(images, targets, run.accumulation))
    total = torch.zeros((), device=images.device)
    for i, (x, y, weight) in enumerate(parts):
        with _gradient_sync(run, last=i == len(parts) - 1), run.autocast():
            loss = run.criterion(x, run.train_model(x), y) * weight
        (run.scaler.scale(loss) if run.scaler is not None else loss).backward()
        total += loss.detach().float()
    if run.scaler is not None:
        run.scaler.unscale_(run.optimizer)  # clipping sees the true gradients
    if run.config.optimizer.clip_grad is not None:
        nn.utils.clip_grad_norm_(run.model.parameters(), run.config.optimizer.clip_grad)
    if run.scaler is not None:
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        run.optimizer.step()
    if run.ema is not None:
        run.ema.update(run.model)
    return total


def _gradient_sync(run: Run, last: bool):
    """DDP's all-reduce only after the last micro-batch (`no_sync` before it); nothing to do in one process."""
    if last or run.env.world_size == 1:
        return nullcontext()
    return cast(Any, run.train_model).no_sync()


def _check_stop(run: Run, should_stop: StopCheck, pending: str | None, epoch: int, step: int) -> str | None:
    """Ask `should_stop`; raise RunStopped on a reason (shared with the other processes every few steps)."""
    reason = pending or should_stop()
    if run.env.world_size > 1:
        if step % STOP_SYNC_STEPS:
            return reason
        reason = distributed.shared_stop(reason, run.device)
    if reason:
        raise RunStopped(reason, epoch, step)
    return None


def train_one_epoch(run: Run, epoch: int, should_stop: StopCheck = lambda: None) -> EpochStats:
    """One pass over the training set; raises TrainingDiverged on a NaN or infinite loss and RunStopped when
    `should_stop` gives a reason."""
    run.scheduler.step(epoch)
    run.train_loader.sampler.set_epoch(epoch)
    run.train_model.train()
    device = run.device
    t0 = time.perf_counter()
    loss_sum = torch.zeros((), device=device)
    steps, samples, pending, data_wait = 0, 0, None, 0.0
    # waiting for data: from the end of one step (or the epoch's start) to the next batch in hand. On a GPU the
    # steps run asynchronously, so a loader slower than the GPU shows here, and a GPU slower than the loader
    # shows in the steps (at their synchronisations)
    asked = time.perf_counter()
    for step, (images, targets) in enumerate(run.train_loader):
        data_wait += time.perf_counter() - asked
        pending = _check_stop(run, should_stop, pending, epoch, step)
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        loss_value = train_step(run, images, targets)
        # on a GPU, reading the loss waits for the step: only every 20 steps
        if (device.type == "cpu" or step % 20 == 0) and not math.isfinite(loss_value.item()):
            lr = run.optimizer.param_groups[0]["lr"]
            raise TrainingDiverged(f"loss is {loss_value.item()} at epoch {epoch}, step {step} (lr {lr:.3g})")
        loss_sum += loss_value.float()
        steps += 1
        samples += images.shape[0]
        asked = time.perf_counter()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    mean_loss = float(distributed.mean(loss_sum / max(steps, 1)))
    if not math.isfinite(mean_loss):
        raise TrainingDiverged(f"loss is {mean_loss} in epoch {epoch}")
    return EpochStats(mean_loss, samples * run.env.world_size, time.perf_counter() - t0, data_wait)


def epoch_line(epoch: int, epochs: int, metrics: dict[str, float], stats: EpochStats) -> str:
    """One line of progress for the job's log."""
    return (f"epoch {epoch_of(epoch, epochs)}  train_loss {stats.loss:.4f}  top1 {metrics['top1']:.2f}  "
            f"lr {metrics['lr']:.2e}  {stats.samples / stats.seconds:.0f} img/s  {stats.seconds:.1f} s  "
            f"data wait {stats.data_wait_s / stats.seconds:.0%}")


def _train(config: RunConfig, run_dir: Path, sink: MetricSink, run_files, env: distributed.DistEnv,
           should_stop: StopCheck) -> dict[str, float]:
    info: dict[str, str] = {}
    run, teacher = build_run(config, env, run_files, info)
    is_main = env.rank == 0
    # every process resumes from the checkpoint the run last published, as process 0 learns it from the sink
    published = distributed.from_first(sink.published(CHECKPOINT, run_dir) if is_main else None)
    progress = resume(published, run.model, run.optimizer, run.scheduler, run.ema, env.rank,
                      run.scaler)
    teacher_eval = run.evaluate(teacher, prefix="teacher_") if teacher is not None else None

    last_eval: EvalResult | None = None
    for epoch in range(progress.next_epoch, config.schedule.epochs):
        stats = train_one_epoch(run, epoch, should_stop)
        progress.train_time_s += stats.seconds
        progress.train_samples += stats.samples
        last_eval = run.evaluate(run.model)
        metrics = {"train_loss": stats.loss, "lr": run.optimizer.param_groups[0]["lr"], **last_eval.metrics,
                   "train_img_s": stats.samples / stats.seconds, "data_wait_s": stats.data_wait_s,
                   "data_wait_frac": stats.data_wait_s / stats.seconds}
        if run.ema is not None:
            metrics.update(run.evaluate(run.ema.module, prefix="ema_").metrics)
        progress.history.append(metrics)
        rngs = distributed.gather_objects(rng_state())
        if is_main:
            # written under this writer's own name, then published with the epoch's metrics in one fenced write
            checkpoint = save_checkpoint(run_dir / sink.file_name(CHECKPOINT, epoch), run.model, run.optimizer,
                                         run.scheduler, run.ema, progress, rngs,
                                         scaler=run.scaler)
            sink.log_epoch(epoch, metrics, checkpoint)
            print(epoch_line(epoch, config.schedule.epochs, metrics, stats), flush=True)
        distributed.barrier()

    if last_eval is None:  # resumed after the last epoch: evaluate the stored weights again for the predictions
        last_eval = run.evaluate(run.model)
    result = dict(progress.history[-1]) if progress.history else dict(last_eval.metrics)
    if teacher_eval is not None:
        result["teacher_top1"] = teacher_eval.metrics["teacher_top1"]
    if env.world_size > 1:
        # in each task's log: the processes' weights must be equal, and this shows they are
        print(f"rank {env.rank} of {env.world_size}: final weights sha256 {distributed.weights_digest(run.model)}",
              flush=True)
    if not is_main:
        return result
    info.update({"device": final.device_name(run.device), "model": student_name(config),
                 "world_size": str(env.world_size), "flops_counter": "torch.utils.flop_counter, 2 FLOPs per multiply-add",
                 "top1_unit": "percent"})
    result.update(final.measure(config, run.model, run.device, progress, info))
    # the weights are written last, just before they are published with the final results: a refused write
    # before them (the run taken over) leaves no file of this writer behind
    final.report(sink, result, info, last_eval, teacher_eval,
                 lambda: final.save_weights(run_dir, run.model, run.ema, sink))
    return result
