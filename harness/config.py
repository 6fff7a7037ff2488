"""The fully resolved configuration of one training run.

A `RunConfig` is what the trainer consumes and what identifies a run: its hash is
the SHA-256 of its sorted JSON (`run_hash`). Every field has a default taken from
the DeiT paper's recipe (Table 9, DeiT-B column), so a spec only states what it
changes. Configs are frozen and reject unknown keys.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, model_validator

# Strict scalars: `epochs: true` is not 1, `batch_size: 2.5` and `base_lr: "fast"` are errors, not conversions.
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
Bool = Annotated[bool, Strict()]
# the largest count a config takes (epochs, batch sizes, pixels...): far beyond any real run, far below overflow
MAX_COUNT = 10**7
# seeds fit numpy's 32-bit seed
MAX_SEED = 2**32 - 1


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class ModelConfig(Frozen):
    # timm model name (DeiT models, timm convnets, or the harness's tiny 32-px models)
    name: str = "deit_base_patch16_224"
    # train the distillation-token twin of `name` (DeiT⚗); the twin is looked up by name
    distillation_token: Bool = False
    # stochastic depth rate
    drop_path: Float = Field(0.1, ge=0.0, lt=1.0)
    # dropout rate where the reference code (timm 0.3.2's drop_rate) put it: for a ViT after the position
    # embedding, the attention projection and both MLP layers, none before the head; for a convnet before its
    # classifier (timm's drop_rate). The paper uses none; Table 8's "Dropout" row uses 0.1
    dropout: Float = Field(0.0, ge=0.0, lt=1.0)


class DataConfig(Frozen):
    # dataset name from the dataset registry (digits, fashion_mnist, imagefolder)
    name: str = "imagefolder"
    # dataset root: for imagefolder, a folder with train/ and val/ class folders
    root: str | None = None
    # training (and evaluation) resolution in pixels
    img_size: Int = Field(224, ge=8, le=MAX_COUNT)
    # seeded, class-balanced subset of the training set (None: all of it)
    train_subset: Int | None = Field(None, ge=1, le=MAX_COUNT)
    # seed of the train/val split for datasets that ship without one
    split_seed: Int = Field(0, ge=0, le=MAX_SEED)
    # data-loader worker processes (imagefolder)
    num_workers: Int = Field(8, ge=0, le=MAX_COUNT)
    # evaluation centre-crop ratio
    crop_pct: Float = Field(0.875, gt=0.0, le=1.0)


class OptimizerConfig(Frozen):
    # adamw (the paper) or sgd (Table 8's SGD rows)
    name: Literal["adamw", "sgd"] = "adamw"
    # learning rate for a batch of 512; the actual rate is base_lr * batch_size / 512
    base_lr: Float = Field(5e-4, gt=0.0)
    # decoupled weight decay
    weight_decay: Float = Field(0.05, ge=0.0)
    # AdamW epsilon
    eps: Float = Field(1e-8, gt=0.0)
    # SGD momentum
    momentum: Float = Field(0.9, ge=0.0, lt=1.0)
    # gradient-norm clipping (None: off)
    clip_grad: Float | None = Field(None, gt=0.0)
    # torch's fused optimizer kernel (one kernel for all parameters) where the device has one (CUDA, CPU);
    # elsewhere the unfused one. Off at the CPU profiles, on in the paper-scale specs
    fused: Bool = False


class ScheduleConfig(Frozen):
    # training epochs
    epochs: Int = Field(300, ge=1, le=MAX_COUNT)
    # linear warm-up epochs
    warmup_epochs: Int = Field(5, ge=0, le=MAX_COUNT)
    # learning rate at the start of warm-up
    warmup_lr: Float = Field(1e-6, ge=0.0)
    # learning rate at the end of the cosine schedule
    min_lr: Float = Field(1e-5, ge=0.0)


class AugmentConfig(Frozen):
    # timm auto-augment policy: "rand-m9-mstd0.5-inc1" (RandAugment), "original" (AutoAugment), or None
    auto_augment: str | None = "rand-m9-mstd0.5-inc1"
    # colour jitter strength (ignored by timm while auto_augment is set)
    color_jitter: Float = Field(0.3, ge=0.0)
    # Mixup alpha (0: off)
    mixup: Float = Field(0.8, ge=0.0)
    # CutMix alpha (0: off)
    cutmix: Float = Field(1.0, ge=0.0)
    # probability of switching to CutMix when both are on
    mixup_switch_prob: Float = Field(0.5, ge=0.0, le=1.0)
    # probability of applying Mixup/CutMix to a batch
    mixup_prob: Float = Field(1.0, ge=0.0, le=1.0)
    # label smoothing
    label_smoothing: Float = Field(0.1, ge=0.0, lt=1.0)
    # random-erasing probability
    random_erasing: Float = Field(0.25, ge=0.0, le=1.0)
    # smallest area fraction of the random-resized crop (timm's scale lower bound)
    crop_scale_min: Float = Field(0.08, gt=0.0, le=1.0)
    # horizontal-flip probability
    hflip: Float = Field(0.5, ge=0.0, le=1.0)
    # repeated augmentation (each image seen `repeats` times per epoch, differently augmented)
    repeated_aug: Bool = True
    # repeats per image under repeated augmentation
    repeated_aug_repeats: Int = Field(3, ge=1, le=MAX_COUNT)
    # resize interpolation
    interpolation: Literal["bicubic", "bilinear", "nearest"] = "bicubic"


class EmaConfig(Frozen):
    # keep an exponential moving average of the weights and evaluate it too
    enabled: Bool = False
    # EMA decay per step (the paper's 0.99996 averages over about 25,000 steps: 20 of its 300 ImageNet epochs)
    decay: Float = Field(0.99996, gt=0.0, lt=1.0)
    # or the averaging horizon in epochs, for runs of any length: the trainer uses the per-step decay
    # exp(-1 / (horizon_epochs x the run's steps per epoch)), under which a step's weight falls by e in that many
    # epochs; set, it replaces `decay`. None: `decay` as given
    horizon_epochs: Float | None = Field(None, gt=0.0, le=MAX_COUNT)

    def step_decay(self, steps_per_epoch: int) -> float:
        """The per-step decay of a run with `steps_per_epoch` optimiser steps per epoch."""
        if self.horizon_epochs is None:
            return self.decay
        return math.exp(-1.0 / (self.horizon_epochs * steps_per_epoch))


# ARCHITECTURE.TAG, in the characters a hub repository name allows (`timm/<tag>`): every tag timm publishes
PRETRAINED_TAG = re.compile(r"[A-Za-z0-9_]+(?:-[A-Za-z0-9_]+)*\.[A-Za-z0-9_]+(?:-[A-Za-z0-9_]+)*")


def check_pretrained_tag(tag: str | None, what: str) -> None:
    # the default weights of a bare architecture name may change with timm: the tag must name them
    if tag is not None and (len(tag) > 90 or not PRETRAINED_TAG.fullmatch(tag)):
        raise ValueError(f"{what} '{tag}' is not a timm pretrained tag ARCHITECTURE.TAG (e.g. regnety_160.deit_in1k)")


def _one_of(what: str, **sources: Any) -> None:
    given = [k for k, v in sources.items() if v is not None]
    if len(given) != 1:
        names = ", ".join(f"'{k}'" for k in sources)
        raise ValueError(f"{what} needs exactly one of {names}" + (f" (got {', '.join(given)})" if given else ""))


class TeacherConfig(Frozen):
    # timm name of the teacher network
    model: str = "regnety_160"
    # checkpoint file holding the teacher's state dict
    checkpoint: str | None = None
    # another run that trained the teacher: a variant name in a spec, resolved to its run hash
    run: str | None = None
    # timm pretrained weights of `model`, by tag (regnety_160.deit_in1k: the paper's teacher), from the hub cache
    pretrained: str | None = None
    # resolution the teacher sees (None: the student's): the batch is resized to it and a ViT teacher is built for it
    img_size: Int | None = Field(None, ge=8, le=MAX_COUNT)

    @model_validator(mode="after")
    def _one_source(self) -> "TeacherConfig":
        _one_of("a teacher", checkpoint=self.checkpoint, run=self.run, pretrained=self.pretrained)
        check_pretrained_tag(self.pretrained, "teacher.pretrained")
        if self.pretrained is not None and self.pretrained.split(".")[0] != self.model:
            raise ValueError(f"teacher.pretrained '{self.pretrained}' holds weights of "
                             f"'{self.pretrained.split('.')[0]}', not of teacher.model '{self.model}'")
        return self


class DistillationConfig(Frozen):
    # none, soft (KL on temperature-scaled logits) or hard (cross-entropy on the teacher's argmax)
    kind: Literal["none", "soft", "hard"] = "none"
    # weight of the distillation term: loss = (1 - alpha) * base + alpha * distill
    alpha: Float = Field(0.5, ge=0.0, le=1.0)
    # soft-distillation temperature
    tau: Float = Field(1.0, gt=0.0)
    # the teacher (required unless kind is none)
    teacher: TeacherConfig | None = None

    @model_validator(mode="after")
    def _teacher_when_needed(self) -> "DistillationConfig":
        if self.kind != "none" and self.teacher is None:
            raise ValueError(f"distillation kind '{self.kind}' needs a teacher")
        return self


class FinetuneConfig(Frozen):
    # start from another run's final weights: a variant name in a spec, resolved to its run hash
    from_run: str | None = None
    # or from a checkpoint file
    checkpoint: str | None = None
    # or from timm pretrained weights, by tag (deit_base_patch16_224.fb_in1k), from the hub cache
    pretrained: str | None = None
    # start from the source's EMA weights (the run's model_ema.pt, a checkpoint's EMA entry) instead of its own
    use_ema: Bool = False

    @model_validator(mode="after")
    def _one_source(self) -> "FinetuneConfig":
        _one_of("fine-tuning", from_run=self.from_run, checkpoint=self.checkpoint, pretrained=self.pretrained)
        check_pretrained_tag(self.pretrained, "finetune.pretrained")
        if self.use_ema and self.pretrained is not None:
            raise ValueError("finetune.use_ema needs a run or a checkpoint with EMA weights, not pretrained weights")
        return self


class ThroughputConfig(Frozen):
    # inference-throughput protocols to measure after training: paper (fp32) and/or fast (bf16)
    protocols: tuple[Literal["paper", "fast"], ...] = ("paper",)
    # batch size for the measurement (None: the largest that fits, as in the paper)
    batch_size: Int | None = Field(None, ge=1, le=MAX_COUNT)
    # timed repetitions after warm-up
    repeats: Int = Field(30, ge=1, le=MAX_COUNT)


class RunConfig(Frozen):
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    augment: AugmentConfig = AugmentConfig()
    ema: EmaConfig = EmaConfig()
    distillation: DistillationConfig = DistillationConfig()
    # fine-tune from earlier weights (the paper's ↑384 runs)
    finetune: FinetuneConfig | None = None
    throughput: ThroughputConfig = ThroughputConfig()
    # total training batch size over all processes
    batch_size: Int = Field(1024, ge=1, le=MAX_COUNT)
    # evaluation batch size
    eval_batch_size: Int = Field(256, ge=1, le=MAX_COUNT)
    # random seed
    seed: Int = Field(0, ge=0, le=MAX_SEED)
    # auto (cuda when present), cpu or cuda
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # training precision: fp32; bf16 autocast; fp16 autocast with a gradient scaler (the reference's setting); or
    # auto: bf16 where the GPU supports it, else fp16 with the scaler (fp32 on a CPU). The run records the resolved one
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "fp32"
    # a lab's own modules (the spec's `imports:`), imported before anything is built: they register models and
    # datasets by name. Their names are part of the run's identity, their code is not (its SHA-256 is provenance)
    imports: tuple[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")], ...] = ()
    # train the student through torch.compile (checkpoints, EMA and evaluation use the plain module's weights);
    # the first steps pay for compiling. Off at the CPU profiles, on in the paper-scale specs
    compile: Bool = False
    # convnets of the run (a convnet teacher, a convnet student) in channels-last memory, which GPU convolutions
    # run faster in; ViTs have no convolution to speed up and ignore it
    channels_last: Bool = False
    # processes a CPU run trains with (DDP over gloo; the executor starts one task each: SLURM tasks, local
    # processes); batch_size is their total. A GPU run has one process per GPU of its job instead
    processes: Int = Field(1, ge=1, le=1024)
    # micro-batches each optimizer step accumulates: batch_size stays the recipe's total, each device takes
    # batch_size / (devices * accumulation_steps) per micro-batch; "auto" picks the fewest that fit
    accumulation_steps: Int | Literal["auto"] = 1
    # GPUs one run trains on, with DDP over one process each (local GPUs of this machine, or a SLURM job's);
    # batch_size is their total
    gpus: Int = Field(1, ge=1, le=1024)

    @model_validator(mode="after")
    def _processes_on_cpus(self) -> "RunConfig":
        if self.processes > 1 and self.device != "cpu":
            raise ValueError(f"processes: {self.processes} needs device: cpu (GPU runs take one process per GPU "
                             "of their job)")
        if self.gpus > 1 and self.device == "cpu":
            raise ValueError(f"gpus: {self.gpus} needs device: cuda or auto (a CPU run sets processes instead)")
        if self.batch_size % self.devices:
            what = f"processes: {self.processes}" if self.device == "cpu" else f"gpus: {self.gpus}"
            raise ValueError(f"batch_size {self.batch_size} is not divisible by {what}")
        steps = self.accumulation_steps
        if steps != "auto" and not 1 <= steps <= MAX_COUNT:
            raise ValueError(f"accumulation_steps {steps} must be 'auto' or at least 1 and at most {MAX_COUNT}")
        if steps != "auto" and self.batch_size % (self.devices * steps):
            devices = "processes" if self.device == "cpu" else "gpus"
            raise ValueError(f"batch_size {self.batch_size} is not divisible by {devices} x accumulation_steps "
                             f"({self.devices} x {steps})")
        return self

    @property
    def devices(self) -> int:
        """The processes the run trains with, one per device: its GPUs, or a CPU run's processes."""
        return self.processes if self.device == "cpu" else self.gpus

    def as_json(self) -> dict[str, Any]:
        # keys added after runs were stored are left out at their default, so those runs keep their hashes
        left_out = {key for key, default in LATE_KEYS.items() if getattr(self, key) == default}
        return self.model_dump(mode="json", exclude=left_out or None)


# RunConfig keys that a run's JSON (and so its hash) holds only when they differ from these defaults
LATE_KEYS: dict[str, Any] = {"imports": (), "accumulation_steps": 1, "gpus": 1}


def run_hash(config: RunConfig) -> str:
    """The run's identity: SHA-256 of the config's sorted JSON."""
    text = json.dumps(config.as_json(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


SHORT_HASH = 10


def short_hash(full_hash: str) -> str:
    return full_hash[:SHORT_HASH]
