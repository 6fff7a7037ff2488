"""Training in mixed precision with gradient accumulation, against fp32: one short run of the harness trainer per
precision on synthetic images, each keeping the recipe's batch with `accumulation_steps` (default `auto`: the
largest micro-batch that fits, probed on the GPU). One markdown row per precision, appended to `--markdown` as
soon as it is measured: the precision asked and resolved, the per-device batch, micro-batch and accumulation
chosen, peak memory, and training images/s of the last epoch.

    python benchmarks/gpu/precision.py --device cuda --markdown results.md     # DeiT-B, batch 1024, 224 px

On a CPU `auto` accumulation means 1, so the smallest run names two steps.
Smallest run: python benchmarks/gpu/precision.py --device cpu --model deit_tiny_patch4_32 --img-size 16 --batch 32 --train-subset 64 --accumulation 2 --epochs 1
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from benchmarks.markdown import device_description, emit  # noqa: E402
from harness.config import RunConfig  # noqa: E402
from harness.trainer import train  # noqa: E402
from harness.trainer.sink import MemorySink  # noqa: E402


def config(args: argparse.Namespace, precision: str) -> RunConfig:
    steps = args.accumulation if args.accumulation == "auto" else int(args.accumulation)
    return RunConfig.model_validate({
        "model": {"name": args.model},
        "data": {"name": "synthetic", "img_size": args.img_size, "train_subset": args.train_subset,
                 "num_workers": 0},
        "schedule": {"epochs": args.epochs, "warmup_epochs": 0},
        "throughput": {"protocols": []},
        "batch_size": args.batch, "eval_batch_size": min(args.batch, 256), "device": args.device,
        "precision": precision, "accumulation_steps": steps,
    })


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    p.add_argument("--model", default="deit_base_patch16_224")
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--batch", type=int, default=1024, help="the recipe's total batch")
    p.add_argument("--train-subset", type=int, default=2048, help="synthetic training images (an epoch)")
    p.add_argument("--epochs", type=int, default=2, help="the last epoch's images/s is reported")
    p.add_argument("--accumulation", default="auto", help="micro-batches a step, or auto")
    p.add_argument("--precisions", default="fp32,auto")
    p.add_argument("--markdown", type=Path, default=None, help="append the result rows to this file")
    args = p.parse_args()
    emit([f"### Training: mixed precision and accumulation at batch {args.batch}, {args.model} @ {args.img_size} "
          f"({device_description(torch.device(args.device))})", "",
          "| precision | resolved | per-device batch | micro-batch | accumulation | peak MiB | train img/s |",
          "|---|---|---|---|---|---|---|"], args.markdown)
    for precision in args.precisions.split(","):
        sink = MemorySink()
        with tempfile.TemporaryDirectory() as run_dir:
            train(config(args, precision), Path(run_dir), sink, lambda other: Path(run_dir))
        info, last = sink.info, sink.epochs[max(sink.epochs)]
        emit(f"| {precision} | {info['precision']} | {info['per_device_batch']} | {info['micro_batch']} "
             f"| {info['accumulation_steps']} | {sink.final['peak_mem_mb']:.0f} | {last['train_img_s']:.0f} |",
             args.markdown)
        if args.device == "cuda":
            torch.cuda.empty_cache()
    emit("", args.markdown)


if __name__ == "__main__":
    main()
