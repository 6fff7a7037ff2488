"""The per-device plan of a GPU run before it is launched: its batch on each device, the micro-batches it
accumulates, and the peak memory they are expected to need against the memory of this machine's GPUs.

`batch_size` is the recipe's total: each of a run's `devices` takes batch_size / devices images per optimizer
step, in `accumulation_steps` micro-batches (`auto`: the fewest whose expected peak fits). A run whose plan
cannot fit is refused before anything is submitted, with the setting that would fit.

The expected peak of one device is an estimate, from the config alone (`footprint`):

- **model states**: P student parameters × (4 B fp32 weights + 4 B gradients + optimizer state, 8 B for AdamW's
  two moments or 4 B for SGD's momentum, + 4 B for the EMA copy when it is on + 4 B for DDP's gradient buckets
  under several devices + 2 B for autocast's half copy of the weights under mixed precision), and a teacher's
  fp32 weights (it trains nothing: no gradient, no state);
- **activations**: the bytes autograd saves for backward per image, *measured* by one training-mode forward of
  the student (the trainer's own builder) on torch's meta device, which allocates nothing and computes nothing,
  under `saved_tensors_hooks`: every saved tensor that is not a parameter counts once, by its shape and dtype.
  Mixed precision is measured twice, with the model in fp32 and in bf16, and the midpoint taken: autocast
  saves the matmul inputs in half but keeps the residual stream, the norms and the softmax in fp32, so the truth
  lies between the two;
- the sum × `SAFETY` (the caching allocator's fragmentation) + `RESERVE_GIB` (CUDA context, cuBLAS/cuDNN
  workspaces).

Left out, and why this is an estimate rather than a measurement: the teacher's forward activations (freed
layer by layer under no_grad), evaluation (no_grad, eval_batch_size), torch.compile's buffers, and the attention
kernel: the meta forward takes the math path and saves each layer's attention matrix, where the flash and
memory-efficient kernels on a GPU save far less, so for ViTs at high resolution the estimate errs high. The
trainer's own `auto` finds the micro-batch by a probe on the device; this plan is what the launcher expects.

The card's memory is `HARNESS_DEVICE_MEMORY_GIB` when set (tests, or planning for another machine's cards), else
the smallest of the visible GPUs as nvidia-smi reports it (which, unlike torch, opens no CUDA context in the
launcher on a GPU its jobs need), else torch.cuda's; no GPU: no plan.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable

from harness.config import RunConfig

GIB = 2**30
# the caching allocator's fragmentation, over what tensors hold
SAFETY = 1.1
# CUDA context, cuBLAS and cuDNN workspaces
RESERVE_GIB = 1.5
ENV = "HARNESS_DEVICE_MEMORY_GIB"


def device_memory_gib() -> float | None:
    """Memory of one of this machine's GPUs in GiB (the smallest visible one); None without a GPU."""
    from harness.launch.executors import local_gpu_ids

    if os.environ.get(ENV):
        try:
            return float(os.environ[ENV])
        except ValueError:
            raise ValueError(f"{ENV} must be a number of GiB, not '{os.environ[ENV]}'") from None
    ids = local_gpu_ids()
    if not ids:
        return None
    if shutil.which("nvidia-smi"):
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits",
                              "-i", ",".join(map(str, ids))], capture_output=True, text=True, check=False)
        mib = [float(x) for x in out.stdout.split() if x.replace(".", "", 1).isdigit()]
        if mib:
            return min(mib) / 1024
    import torch

    if not torch.cuda.is_available():
        return None
    return min(torch.cuda.get_device_properties(i).total_memory for i in range(torch.cuda.device_count())) / GIB


@dataclass(frozen=True)
class Footprint:
    """What one device holds for a run: bytes independent of the batch, and bytes per image of a micro-batch."""

    state_bytes: float
    image_bytes: float

    def peak_gib(self, micro_batch: int) -> float:
        return (self.state_bytes + self.image_bytes * micro_batch) * SAFETY / GIB + RESERVE_GIB


@dataclass(frozen=True)
class DevicePlan:
    """A run's batch per device, its micro-batches, and the expected peak memory of one device."""

    devices: int
    per_device: int
    accumulation: int
    peak_gib: float
    memory_gib: float
    # the accumulation that would fit (None: not even one image a micro-batch fits)
    fitting: int | None

    @property
    def micro_batch(self) -> int:
        return self.per_device // self.accumulation

    @property
    def fits(self) -> bool:
        return self.peak_gib <= self.memory_gib

    def describe(self) -> str:
        gpus = f"{self.devices} GPU" + ("s" if self.devices > 1 else "")
        return (f"{gpus} × {self.per_device} images per step = {self.accumulation} micro-batch"
                f"{'es' if self.accumulation > 1 else ''} of {self.micro_batch}, peak ~{self.peak_gib:.1f} GiB "
                f"of {self.memory_gib:.0f} GiB per GPU")


def plan_run(config: RunConfig, memory_gib: float, footprint_of: Any = None) -> DevicePlan:
    """The run's per-device plan on GPUs of `memory_gib` (accumulation `auto`: the fewest micro-batches that fit)."""
    fp = (footprint_of or footprint)(config)
    per_device = config.batch_size // config.devices
    # accumulations the trainer can take: each divides the per-device batch
    choices = [k for k in range(1, per_device + 1) if per_device % k == 0]
    fitting = next((k for k in choices if fp.peak_gib(per_device // k) <= memory_gib), None)
    steps = config.accumulation_steps
    accumulation = (fitting or per_device) if steps == "auto" else int(steps)
    return DevicePlan(config.devices, per_device, accumulation, fp.peak_gib(per_device // accumulation),
                      memory_gib, fitting)


def refusal(plan: DevicePlan) -> str:
    """Why a plan cannot run, and what would."""
    why = (f"{plan.micro_batch} images a micro-batch need ~{plan.peak_gib:.0f} GiB per GPU, more than the "
           f"{plan.memory_gib:.0f} GiB of this machine's")
    if plan.fitting is None:
        return why + "; not even one image a micro-batch fits: a smaller model or resolution, or a larger card"
    micro = plan.per_device // plan.fitting
    return why + f"; accumulation_steps: {plan.fitting} (or auto) takes {plan.fitting} micro-batches of {micro}"


def device_plans(runs: Iterable[Any], executor: str | None, max_parallel: int | None = None
                 ) -> tuple[list[str], list[str]]:
    """For the GPU runs that train on this machine (the local and debug executors) when it has GPUs: a heading
    (its GPUs, the runs trained at once), one line of plan per run, and one problem per run that cannot fit.
    Nothing on SLURM (its nodes' cards are not known here) or without a GPU."""
    from harness.launch.executors import local_gpu_ids

    gpu_runs = [r for r in runs if r.config.device != "cpu"]
    if executor not in ("local", "debug") or not gpu_runs:
        return [], []
    try:
        memory = device_memory_gib()
    except ValueError as exc:
        return [], [str(exc)]
    if memory is None:
        return [], []
    gpus = len(local_gpu_ids())
    where = f"this machine's {gpus} GPU{'s' if gpus != 1 else ''}" if gpus else "GPUs"
    at_once = f", up to {max_parallel} runs at once, each on GPUs of its own" if max_parallel and gpus else ""
    lines, problems = [f"Per GPU, on {where} of {memory:.0f} GiB{at_once} (expected peaks: an estimate, see "
                       "harness/launch/memory.py):"], []
    for run in gpu_runs:
        try:
            plan = plan_run(run.config, memory)
        except Exception as exc:  # a model that cannot be built on the meta device: no plan, and why
            lines.append(f"{run.short}  no plan: building {run.config.model.name} failed: {type(exc).__name__}")
            continue
        lines.append(f"{run.short}  {plan.describe()}" + ("" if plan.fits else "  DOES NOT FIT"))
        if not plan.fits:
            problems.append(f"{run.short} {run.describe()}: {refusal(plan)}")
    return lines, problems


def footprint(config: RunConfig) -> Footprint:
    """The run's bytes per device (see the module docstring)."""
    student, teacher = _parameters(config)
    optimizer = 8 if config.optimizer.name == "adamw" else 4
    per_parameter = 4 + 4 + optimizer + (4 if config.ema.enabled else 0) + (4 if config.devices > 1 else 0)
    mixed = config.precision != "fp32"
    per_parameter += 2 if mixed else 0
    image = _saved_per_image(config, "fp32")
    if mixed:
        image = (image + _saved_per_image(config, "half")) / 2
    return Footprint(student * per_parameter + teacher * 4, image)


def _parameters(config: RunConfig) -> tuple[int, int]:
    """Parameters of the student and of its teacher (0 without one), counted on the meta device."""
    teacher = config.distillation.teacher if config.distillation.kind != "none" else None
    size = config.data.img_size
    return (_count(_student_key(config)),
            _count((teacher.model, _classes(config), teacher.img_size or size, 0.0, 0.0)) if teacher else 0)


def _student_key(config: RunConfig) -> tuple[str, int, int, float, float]:
    from harness.trainer.probe import student_name

    return (student_name(config), _classes(config), config.data.img_size, config.model.dropout,
            config.model.drop_path)


def _classes(config: RunConfig) -> int:
    from harness.launch.probe import num_classes

    return num_classes(config)


def _meta_model(key: tuple[str, int, int, float, float]):
    import torch

    from harness.trainer.probe import create_model

    name, classes, size, dropout, drop_path = key
    with torch.device("meta"):
        return create_model(name, classes, size, dropout, drop_path)


@lru_cache(maxsize=64)
def _count(key: tuple[str, int, int, float, float]) -> int:
    return sum(p.numel() for p in _meta_model(key).parameters())


def _saved_per_image(config: RunConfig, precision: str) -> float:
    return _saved_bytes(_student_key(config), precision) / PROBE_IMAGES


# images of the meta forward (it costs nothing): more than one, so that a layer folding the batch into another
# dimension is still counted per image
PROBE_IMAGES = 2


@lru_cache(maxsize=64)
def _saved_bytes(key: tuple[str, int, int, float, float], precision: str) -> int:
    """Bytes autograd saves for backward in one training-mode forward of PROBE_IMAGES images, on the meta
    device; `precision` fp32, or half (the model and the images in bf16)."""
    import torch

    model = _meta_model(key).train()
    dtype = torch.float32 if precision == "fp32" else torch.bfloat16
    model = model.to(dtype)
    weights = {id(p) for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        base = tensor._base if tensor._base is not None else tensor
        if id(base) not in weights:
            # a tensor saved by several operations (or views of it) is held once
            saved[id(base)] = base.numel() * base.element_size()
        return tensor

    images = torch.empty(PROBE_IMAGES, 3, key[2], key[2], device="meta", dtype=dtype)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(images)
    return sum(saved.values())
