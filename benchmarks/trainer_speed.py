"""How much the harness trainer costs over a bare PyTorch loop, and whether its `paper` throughput matches timm's.

1. Training: the same model, batch and data (an in-memory dataset, augmentation off), once through
   `harness.trainer.train` and once through a bare forward/backward/AdamW loop; steps/s of each, and the ratio
   harness / bare (target: >= 0.95). The first epoch of each is a warm-up and not counted.
2. Inference: the `paper` throughput protocol (harness.trainer.measure) against timm's benchmark.py method
   (10 warm-up batches, then 50 batches, each synchronised, images/s over the whole run) on the same model and
   batch; the ratio (target: within +-5%).

    python benchmarks/trainer_speed.py                                  # CPU: tiny ViT, digits at 32 px
    python benchmarks/trainer_speed.py --device cuda --model deit_small_patch16_224 --img-size 224 \\
        --dataset synthetic --batch 256 --precision bf16                # GPU

Smallest run: python benchmarks/trainer_speed.py --dataset synthetic --train-subset 64 --img-size 16 --batch 32 --epochs 1 --rounds 1 --repeats 2
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


def make_config(args) -> RunConfig:
    return RunConfig.model_validate({
        "model": {"name": args.model, "drop_path": 0.0},
        "data": {"name": args.dataset, "img_size": args.img_size, "num_workers": 0},
        "augment": AUG_OFF,
        "schedule": {"epochs": args.epochs + 1, "warmup_epochs": 0},
        "throughput": {"protocols": []},
        "batch_size": args.batch,
        "eval_batch_size": args.batch,
        "device": args.device,
        "precision": args.precision,
        "seed": 0,
    })


def harness_steps_per_s(config: RunConfig) -> list[float]:
    sink = MemorySink()
    with tempfile.TemporaryDirectory() as tmp:
        train(config, Path(tmp), sink, lambda h: Path(tmp))
    return [sink.epochs[e]["train_img_s"] / config.batch_size for e in sorted(sink.epochs)[1:]]


def bare_steps_per_s(config: RunConfig, epochs: int) -> list[float]:
    """A plain loop a person would write: uint8 images in memory, normalise, forward, cross-entropy, AdamW."""
    device = resolve_device(config)
    splits = build_dataset(config)
    images, targets = splits.train.images, splits.train.targets
    model = create_model(student_name(config), splits.num_classes, config.data.img_size,
                         dropout=0.0, drop_path=0.0).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    mean = torch.tensor(IMAGENET_DEFAULT_MEAN, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(IMAGENET_DEFAULT_STD, device=device).view(1, 3, 1, 1) * 255
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if config.precision == "bf16" \
        else contextlib.nullcontext
    b = config.batch_size
    rates = []
    for _ in range(epochs + 1):
        order = torch.randperm(len(targets))
        steps = len(order) // b
        t0 = time.perf_counter()
        for s in range(steps):
            idx = order[s * b:(s + 1) * b]
            x = (images[idx].to(device).float() - mean) / std
            y = targets[idx].to(device)
            with autocast():
                loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        rates.append(steps / (time.perf_counter() - t0))
    return rates[1:]


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
    p.add_argument("--rounds", type=int, default=2, help="bare/harness alternations (noise on a shared machine)")
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--skip-train", action="store_true")
    args = p.parse_args()
    config = make_config(args)
    device = resolve_device(config)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"device: {name}; model {args.model} @ {args.img_size}px, batch {args.batch}, {args.precision}")

    if not args.skip_train:
        bare, harness = [], []
        for _ in range(args.rounds):
            bare += bare_steps_per_s(config, args.epochs)
            harness += harness_steps_per_s(config)
        b, h = statistics.median(bare), statistics.median(harness)
        print(f"train steps/s: bare {b:.3f}, harness {h:.3f} (img/s {b * args.batch:.1f} vs {h * args.batch:.1f})")
        print(f"train ratio harness/bare: {h / b:.3f} (target >= 0.95)")

    if not args.skip_throughput:
        model = create_model(student_name(config), 1000 if args.dataset == "synthetic" else 10, args.img_size)
        model = model.to(device).eval()
        paper, timm_way = [], []
        for _ in range(3):
            paper.append(measure_throughput(model, args.img_size, device, "paper", args.batch,
                                            repeats=args.repeats).img_s)
            timm_way.append(timm_method_img_s(model, args.batch, args.img_size, device, iters=args.repeats))
        pm, tm = statistics.median(paper), statistics.median(timm_way)
        print(f"inference img/s at batch {args.batch}: paper protocol {pm:.1f}, timm benchmark method {tm:.1f}")
        print(f"throughput ratio paper/timm: {pm / tm:.3f} (target 0.95 .. 1.05)")


if __name__ == "__main__":
    main()
