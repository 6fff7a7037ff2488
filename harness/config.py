"""The fully resolved configuration of one training run.

A `RunConfig` is what the trainer consumes and what identifies a run: its hash is
the SHA-256 of its sorted JSON (`run_hash`). Every field has a default taken from
the DeiT paper's recipe (Table 9, DeiT-B column), so a spec only states what it
changes. Configs are frozen and reject unknown keys.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelConfig(Frozen):
    # timm model name (DeiT models, timm convnets, or the harness's tiny 32-px models)
    name: str = "deit_base_patch16_224"
    # train the distillation-token twin of `name` (DeiT⚗); the twin is looked up by name
    distillation_token: bool = False
    # stochastic depth rate
    drop_path: float = Field(0.1, ge=0.0, lt=1.0)
    # dropout rate (the paper uses none)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)


class DataConfig(Frozen):
    # dataset name from the dataset registry (digits, fashion_mnist, imagefolder)
    name: str = "imagefolder"
    # dataset root: for imagefolder, a folder with train/ and val/ class folders
    root: str | None = None
    # training (and evaluation) resolution in pixels
    img_size: int = Field(224, ge=8)
    # seeded, class-balanced subset of the training set (None: all of it)
    train_subset: int | None = Field(None, ge=1)
    # seed of the train/val split for datasets that ship without one
    split_seed: int = 0
    # data-loader worker processes (imagefolder)
    num_workers: int = Field(8, ge=0)
    # evaluation centre-crop ratio
    crop_pct: float = Field(0.875, gt=0.0, le=1.0)


class OptimizerConfig(Frozen):
    # adamw (the paper) or sgd (Table 8's SGD rows)
    name: Literal["adamw", "sgd"] = "adamw"
    # learning rate for a batch of 512; the actual rate is base_lr * batch_size / 512
    base_lr: float = Field(5e-4, gt=0.0)
    # decoupled weight decay
    weight_decay: float = Field(0.05, ge=0.0)
    # AdamW epsilon
    eps: float = Field(1e-8, gt=0.0)
    # SGD momentum
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    # gradient-norm clipping (None: off)
    clip_grad: float | None = Field(None, gt=0.0)


class ScheduleConfig(Frozen):
    # training epochs
    epochs: int = Field(300, ge=1)
    # linear warm-up epochs
    warmup_epochs: int = Field(5, ge=0)
    # learning rate at the start of warm-up
    warmup_lr: float = Field(1e-6, ge=0.0)
    # learning rate at the end of the cosine schedule
    min_lr: float = Field(1e-5, ge=0.0)


class AugmentConfig(Frozen):
    # timm auto-augment policy: "rand-m9-mstd0.5-inc1" (RandAugment), "original" (AutoAugment), or None
    auto_augment: str | None = "rand-m9-mstd0.5-inc1"
    # colour jitter strength (ignored by timm while auto_augment is set)
    color_jitter: float = Field(0.3, ge=0.0)
    # Mixup alpha (0: off)
    mixup: float = Field(0.8, ge=0.0)
    # CutMix alpha (0: off)
    cutmix: float = Field(1.0, ge=0.0)
    # probability of switching to CutMix when both are on
    mixup_switch_prob: float = Field(0.5, ge=0.0, le=1.0)
    # probability of applying Mixup/CutMix to a batch
    mixup_prob: float = Field(1.0, ge=0.0, le=1.0)
    # label smoothing
    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0)
    # random-erasing probability
    random_erasing: float = Field(0.25, ge=0.0, le=1.0)
    # smallest area fraction of the random-resized crop (timm's scale lower bound)
    crop_scale_min: float = Field(0.08, gt=0.0, le=1.0)
    # horizontal-flip probability
    hflip: float = Field(0.5, ge=0.0, le=1.0)
    # repeated augmentation (each image seen `repeats` times per epoch, differently augmented)
    repeated_aug: bool = True
    # repeats per image under repeated augmentation
    repeated_aug_repeats: int = Field(3, ge=1)
    # resize interpolation
    interpolation: Literal["bicubic", "bilinear", "nearest"] = "bicubic"


class EmaConfig(Frozen):
    # keep an exponential moving average of the weights and evaluate it too
    enabled: bool = False
    # EMA decay per step
    decay: float = Field(0.99996, gt=0.0, lt=1.0)


class TeacherConfig(Frozen):
    # timm name of the teacher network
    model: str = "regnety_160"
    # checkpoint file holding the teacher's state dict
    checkpoint: str | None = None
    # another run that trained the teacher: a variant name in a spec, resolved to its run hash
    run: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> "TeacherConfig":
        if (self.checkpoint is None) == (self.run is None):
            raise ValueError("a teacher needs exactly one of 'checkpoint' or 'run'")
        return self


class DistillationConfig(Frozen):
    # none, soft (KL on temperature-scaled logits) or hard (cross-entropy on the teacher's argmax)
    kind: Literal["none", "soft", "hard"] = "none"
    # weight of the distillation term: loss = (1 - alpha) * base + alpha * distill
    alpha: float = Field(0.5, ge=0.0, le=1.0)
    # soft-distillation temperature
    tau: float = Field(1.0, gt=0.0)
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

    @model_validator(mode="after")
    def _one_source(self) -> "FinetuneConfig":
        if (self.checkpoint is None) == (self.from_run is None):
            raise ValueError("fine-tuning needs exactly one of 'from_run' or 'checkpoint'")
        return self


class ThroughputConfig(Frozen):
    # inference-throughput protocols to measure after training: paper (fp32) and/or fast (bf16)
    protocols: tuple[Literal["paper", "fast"], ...] = ("paper",)
    # batch size for the measurement (None: the largest that fits, as in the paper)
    batch_size: int | None = Field(None, ge=1)
    # timed repetitions after warm-up
    repeats: int = Field(30, ge=1)


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
    batch_size: int = Field(1024, ge=1)
    # evaluation batch size
    eval_batch_size: int = Field(256, ge=1)
    # random seed
    seed: int = 0
    # auto (cuda when present), cpu or cuda
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # training precision: fp32, or bf16 autocast
    precision: Literal["fp32", "bf16"] = "fp32"

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def run_hash(config: RunConfig) -> str:
    """The run's identity: SHA-256 of the config's sorted JSON."""
    text = json.dumps(config.as_json(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


SHORT_HASH = 10


def short_hash(full_hash: str) -> str:
    return full_hash[:SHORT_HASH]
