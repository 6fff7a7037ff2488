"""How much the harness trainer costs over a bare PyTorch loop, what each training switch buys, and whether the
`paper` throughput protocol matches timm's.

1. Training: the same model, batch and data (an in-memory dataset, augmentation off), through several arms:
   - `harness`: `harness.trainer.train`;
   - `bare`: a bare forward/backward/AdamW loop a person would write, at the same settings;
   - `reference`: the bare loop at the reference trainer's settings (facebookresearch/deit's main.py: fp16
     autocast with a gradient scaler, no compile, unfused AdamW), whatever --precision says;
   each of `harness` and `bare` with switches added by `+`: `compile` (torch.compile), `fused` (fused AdamW),
   `channels_last` (a convnet in channels-last memory), e.g. `harness+compile+fused`.
   Images/s of each arm (median over the timed epochs and --rounds alternations; the first epoch of each is a
   warm-up, compiling included, and not counted), its ratio to `bare` (target for `harness`: >= 0.97; for
   `harness+compile` where compile helps: >= 1.1) and to `reference` (on a GPU in bf16: >= 1.5).
2. Inference: the `paper` throughput protocol (harness.trainer.measure) against timm's benchmark.py method
   (10 warm-up batches, then 50 batches, each synchronised, images/s over the whole run) on the same model and
   batch; the ratio (target: within +-5%).

    python benchmarks/trainer_speed.py                                  # CPU: tiny ViT, digits at 32 px
    python benchmarks/trainer_speed.py --arms bare,harness,harness+compile,harness+fused --skip-throughput
    python benchmarks/trainer_speed.py --model resnet_tiny_32 --arms harness,harness+channels_last --skip-throughput
    python benchmarks/trainer_speed.py --device cuda --model deit_small_patch16_224 --img-size 224 \\
        --dataset synthetic --batch 256 --precision bf16 \\
        --arms bare,harness,bare+compile+fused,harness+compile+fused,reference   # GPU

Smallest run: python benchmarks/trainer_speed.py --dataset synthetic --train-subset 64 --img-size 16 --batch 32 --epochs 1 --rounds 1 --repeats 2 --arms bare,harness,harness+fused,bare+fused,reference
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD  # noqa: E402

from benchmarks.markdown import device_description, emit  # noqa: E402
from harness.config import RunConfig  # noqa: E402
from harness.trainer import train  # noqa: E402
from harness.trainer.datasets import build_dataset  # noqa: E402
from harness.trainer.loop import resolve_device  # noqa: E402
from harness.trainer.models import create_model, student_name  # noqa: E402
from harness.trainer.measure import measure_throughput  # noqa: E402
from harness.trainer.sink import MemorySink  # noqa: E402

AUG_OFF = {
    "auto_augment": None, "color_jitter": 0.0, "mixup": 0.0, "cutmix": 0.0, "random_erasing": 0.0,
    "label_smoothing": 0.0, "repeated_aug": False, "crop_scale_min": 1.0, "hflip": 0.0,
}
BASES = ("bare", "harness", "reference")
SWITCHES = ("compile", "fused", "channels_last")


def make_config(args, **switches) -> RunConfig:
    return RunConfig.model_validate({
        "model": {"name": args.model, "drop_path": 0.0},
        "data": {"name": args.dataset, "img_size": args.img_size, "num_workers": 0, "train_subset": args.train_subset},
        "augment": AUG_OFF,
        "schedule": {"epochs": args.epochs + 1, "warmup_epochs": 0},
        "throughput": {"protocols": []},
        "batch_size": args.batch,
        "eval_batch_size": args.batch,
        "device": args.device,
        "precision": args.precision,
        "seed": 0,
        **switches,
    })


def harness_config(args, switches: set[str]) -> RunConfig:
    return make_config(args, compile="compile" in switches, channels_last="channels_last" in switches,
                       optimizer={"fused": "fused" in switches})


def harness_img_per_s(config: RunConfig) -> list[float]:
    sink = MemorySink()
    with tempfile.TemporaryDirectory() as tmp:
        train(config, Path(tmp), sink, lambda h: Path(tmp))
    return [sink.epochs[e]["train_img_s"] for e in sorted(sink.epochs)[1:]]


def bare_img_per_s(config: RunConfig, epochs: int, switches: frozenset[str] = frozenset(),
                   reference: bool = False) -> list[float]:
    """A plain loop a person would write: uint8 images in memory, normalise, forward, cross-entropy, AdamW.
    `reference`: the reference trainer's settings instead (fp16 autocast, a gradient scaler, unfused AdamW)."""
    memory = torch.channels_last if "channels_last" in switches else torch.contiguous_format
    device = resolve_device(config)
    splits = build_dataset(config)
    images, targets = splits.train.images, splits.train.targets
    model = create_model(student_name(config), splits.num_classes, config.data.img_size,
                         dropout=0.0, drop_path=0.0).to(device, memory_format=memory).train()
    fused = True if "fused" in switches else False if reference else None
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05, fused=fused)
    step_model = torch.compile(model) if "compile" in switches else model
    mean = torch.tensor(IMAGENET_DEFAULT_MEAN, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(IMAGENET_DEFAULT_STD, device=device).view(1, 3, 1, 1) * 255
    dtype = torch.float16 if reference else torch.bfloat16 if config.precision == "bf16" else None
    autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype is not None else contextlib.nullcontext
    scaler = torch.amp.GradScaler(device.type) if reference else None
    b = config.batch_size
    rates = []
    for _ in range(epochs + 1):
        order = torch.randperm(len(targets))
        steps = len(order) // b
        t0 = time.perf_counter()
        for s in range(steps):
            idx = order[s * b:(s + 1) * b]
            x = ((images[idx].to(device).float() - mean) / std).contiguous(memory_format=memory)
            y = targets[idx].to(device)
            with autocast():
                loss = F.cross_entropy(step_model(x), y)
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        rates.append(steps * b / (time.perf_counter() - t0))
    return rates[1:]


def arm_img_per_s(arm: str, args) -> list[float]:
    base, *switches = arm.split("+")
    unknown = [w for w in switches if w not in SWITCHES]
    if base not in BASES or unknown or (base == "reference" and switches):
        raise SystemExit(f"unknown arm '{arm}': one of {', '.join(BASES)}, the first two with +SWITCH "
                         f"({', '.join(SWITCHES)})")
    if base == "harness":
        return harness_img_per_s(harness_config(args, set(switches)))
    return bare_img_per_s(make_config(args), args.epochs, frozenset(switches), reference=base == "reference")


def timm_method_img_s(model, batch: int, img_size: int, device: torch.device, warm: int = 10, iters: int = 50) -> float:
    """timm's benchmark.py inference method: per-batch synchronised steps, images over the whole timed run."""
    def now(sync: bool = False) -> float:
        if sync and device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter()

    model.eval()
    x = torch.randn(batch, 3, img_size, img_size, device=device)
    with torch.no_grad():
        for _ in range(warm):
            model(x)
            now(True)
        start = now()
        for _ in range(iters):
            model(x)
            now(True)
        elapsed = now(True) - start
    return batch * iters / elapsed


def compare_training(args) -> None:
    arms = args.arms.split(",")
    rates: dict[str, list[float]] = {arm: [] for arm in arms}
    for _ in range(args.rounds):  # alternated, so that a change in machine load hits every arm alike
        for arm in arms:
            rates[arm] += arm_img_per_s(arm, args)
    med = {arm: statistics.median(r) for arm, r in rates.items()}
    bare, reference = med.get("bare"), med.get("reference")
    lines = ["| arm | train img/s | vs bare | vs reference settings |", "|---|---|---|---|"]
    for arm in arms:
        vs_bare = f"{med[arm] / bare:.3f}" if bare else "-"
        vs_ref = f"{med[arm] / reference:.3f}" if reference else "-"
        lines.append(f"| {arm} | {med[arm]:.1f} | {vs_bare} | {vs_ref} |")
    emit(lines + ["", "targets: harness >= 0.97 x bare; harness+compile >= 1.1 x bare where compile helps; "
                      "on a GPU in bf16 the harness's best arm >= 1.5 x the reference settings", ""], args.markdown)


def compare_inference(args, device: torch.device) -> None:
    config = make_config(args)
    model = create_model(student_name(config), 1000 if args.dataset == "synthetic" else 10, args.img_size)
    model = model.to(device).eval()
    paper, timm_way = [], []
    for _ in range(3):
        paper.append(measure_throughput(model, args.img_size, device, "paper", args.batch,
                                        repeats=args.repeats).img_s)
        timm_way.append(timm_method_img_s(model, args.batch, args.img_size, device, iters=args.repeats))
    pm, tm = statistics.median(paper), statistics.median(timm_way)
    emit([f"inference img/s at batch {args.batch}: paper protocol {pm:.1f}, timm benchmark method {tm:.1f}",
          f"throughput ratio paper/timm: {pm / tm:.3f} (target 0.95 .. 1.05)", ""], args.markdown)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="deit_tiny_patch4_32")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--img-size", type=int, default=32)
    p.add_argument("--train-subset", type=int, default=None, help="training images (default: the whole set)")
    p.add_argument("--repeats", type=int, default=30, help="timed batches of the inference comparison")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--epochs", type=int, default=3, help="timed epochs (after one warm-up epoch)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--rounds", type=int, default=2, help="alternations of the arms (noise on a shared machine)")
    p.add_argument("--arms", default="bare,harness", help="comma-separated training arms: bare, harness, reference; "
                   f"the first two with +SWITCH ({', '.join(SWITCHES)}), e.g. harness+compile")
    p.add_argument("--markdown", type=Path, default=None, help="append the results to this file")
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--skip-train", action="store_true")
    args = p.parse_args()
    device = resolve_device(make_config(args))
    emit([f"### Training speed ({device_description(device)})", "",
          f"model {args.model} @ {args.img_size}px, batch {args.batch}, {args.precision}, dataset {args.dataset}, "
          f"{args.epochs} timed epochs x {args.rounds} rounds", ""], args.markdown)
    if not args.skip_train:
        compare_training(args)
    if not args.skip_throughput:
        compare_inference(args, device)


if __name__ == "__main__":
    main()
