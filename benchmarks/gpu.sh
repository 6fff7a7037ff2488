#!/usr/bin/env bash
# One short GPU check (under 8 minutes on one H100/H200):
#   1. inference throughput, `paper` (fp32, largest batch) and `fast` (bf16, channels-last, torch.compile)
#      protocols, for DeiT-Ti/S/B at 224 and DeiT-B at 384;
#   2. bf16 training images/s of DeiT-S at batch 256 (synthetic in-memory data, augmentation off), the harness
#      trainer against a bare loop, and the paper protocol against timm's benchmark method.
# Usage: benchmarks/gpu.sh [python]   (default .venv/bin/python); prints a markdown table and the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
export HF_HUB_OFFLINE=1

"$PY" - <<'PY'
import time, torch
import harness.models  # noqa: F401
from harness.trainer.models import create_model
from harness.trainer.measure import measure_throughput
dev = torch.device("cuda")
print(f"device: {torch.cuda.get_device_name(dev)}, torch {torch.__version__}")
print("| model | res | paper img/s | batch | fast img/s | batch | compiled |")
print("|---|---|---|---|---|---|---|")
for name, res in [("deit_tiny_patch16_224", 224), ("deit_small_patch16_224", 224),
                  ("deit_base_patch16_224", 224), ("deit_base_patch16_384", 384)]:
    t0 = time.time()
    model = create_model(name, 1000, res).to(dev)
    paper = measure_throughput(model, res, dev, "paper", repeats=30)
    fast = measure_throughput(create_model(name, 1000, res).to(dev), res, dev, "fast", repeats=30)
    print(f"| {name} | {res} | {paper.img_s:.0f} | {paper.batch_size} | {fast.img_s:.0f} | {fast.batch_size} "
          f"| {fast.compiled} |  ({time.time() - t0:.0f} s)", flush=True)
    del model
    torch.cuda.empty_cache()
PY

"$PY" benchmarks/trainer_speed.py --device cuda --model deit_small_patch16_224 --img-size 224 \
    --dataset synthetic --batch 256 --precision bf16 --epochs 2 --rounds 1
