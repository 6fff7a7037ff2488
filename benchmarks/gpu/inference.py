"""Inference throughput of the DeiT models under the harness's `paper` and `fast` protocols
(harness.trainer.measure): fp32 without TF32 at the largest batch that fits (searched), and bf16 with channels-last and
torch.compile (CUDA). One markdown row per model, appended to `--markdown` as soon as it is measured.

    python benchmarks/gpu/inference.py --device cuda --markdown results.md     # DeiT-Ti/S/B @224, DeiT-B @384

Smallest run: python benchmarks/gpu/inference.py --device cpu --models deit_tiny_patch4_32@16 --batch 8 --repeats 2
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from benchmarks.markdown import device_description, emit  # noqa: E402
from harness.trainer.measure import measure_throughput  # noqa: E402
from harness.trainer.models import create_model  # noqa: E402

PAPER_MODELS = "deit_tiny_patch16_224@224,deit_small_patch16_224@224,deit_base_patch16_224@224,deit_base_patch16_384@384"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    p.add_argument("--models", default=PAPER_MODELS, help="comma-separated NAME@RESOLUTION")
    p.add_argument("--batch", type=int, default=None, help="batch size (default: the largest that fits)")
    p.add_argument("--repeats", type=int, default=30, help="timed batches after warm-up")
    p.add_argument("--markdown", type=Path, default=None, help="append the result rows to this file")
    args = p.parse_args()
    device = torch.device(args.device)
    emit([f"### Inference throughput ({device_description(device)})", "",
          "| model | res | paper img/s | batch | fast img/s | batch | compiled | seconds |",
          "|---|---|---|---|---|---|---|---|"], args.markdown)
    for item in args.models.split(","):
        name, res = item.rsplit("@", 1)
        t0 = time.perf_counter()
        model = create_model(name, 1000, int(res)).to(device)
        paper = measure_throughput(model, int(res), device, "paper", args.batch, repeats=args.repeats)
        fast = measure_throughput(create_model(name, 1000, int(res)).to(device), int(res), device, "fast",
                                  args.batch, repeats=args.repeats)
        emit(f"| {name} | {res} | {paper.img_s:.0f} | {paper.batch_size} | {fast.img_s:.0f} | {fast.batch_size} "
             f"| {fast.compiled} | {time.perf_counter() - t0:.0f} |", args.markdown)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    emit("", args.markdown)


if __name__ == "__main__":
    main()
