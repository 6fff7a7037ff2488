"""What `harness run` adds to a run: the wall time of `harness run` for a one-epoch quick run through the
local executor, against calling the trainer directly on the same config in a fresh process.

Both sides start a Python process from this checkout, import torch and timm and train with the same number
of torch threads (`--threads`, default $OMP_NUM_THREADS or 1; the harness side gets it as `harness run
--threads`); `harness run` also validates and expands the spec, opens the store, submits through submitit (a
second process), polls, and records the run. Target: at most 3 s added per run.

    .venv/bin/python benchmarks/launch_overhead.py [--rounds 3] [--threads N]

Smallest run: python benchmarks/launch_overhead.py --rounds 1 --threads 1
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPEC = """
name: overhead
base:
  model.name: deit_tiny_patch4_32
  data: {name: digits, img_size: 32, num_workers: 0, train_subset: 500}
  device: cpu
  batch_size: 64
  schedule: {epochs: 1, warmup_epochs: 0}
  augment: {auto_augment: null, random_erasing: 0.0, repeated_aug: false}
  throughput: {batch_size: 32, repeats: 3}
"""

DIRECT = """
import sys
from pathlib import Path
import torch
torch.set_num_threads(int(sys.argv[3]))
from harness.spec import expand, load_spec
from harness.trainer import train
from harness.trainer.sink import MemorySink
run = expand(load_spec(sys.argv[1]))[0]
train(run.config, Path(sys.argv[2]), MemorySink(), lambda other: Path(sys.argv[2]) / other)
"""


REPO = Path(__file__).resolve().parent.parent


def timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    # from the checkout, so that both sides import its harness rather than an installed one
    subprocess.run(command, check=True, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS") or 1),
                        help="torch threads of both sides (default: $OMP_NUM_THREADS, else 1)")
    args = parser.parse_args()
    threads = str(args.threads)
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS=threads)
    direct_s, harness_s = [], []
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "overhead.yaml"
        spec.write_text(SPEC)
        for i in range(args.rounds):
            # alternate the two sides so that a change in machine load hits both alike
            out = Path(tmp) / f"direct{i}"
            direct_s.append(timed([sys.executable, "-c", DIRECT, str(spec), str(out), threads], env))
            out = Path(tmp) / f"harness{i}"
            harness_s.append(timed([sys.executable, "-m", "harness", "run", str(spec), "--executor", "local",
                                    "--threads", threads, "--output", str(out)], env))
            shutil.rmtree(out, ignore_errors=True)
    direct, via = statistics.median(direct_s), statistics.median(harness_s)
    print(f"trainer called directly (fresh process): median {direct:.2f} s  {['%.2f' % s for s in direct_s]}")
    print(f"harness run, local executor:            median {via:.2f} s  {['%.2f' % s for s in harness_s]}")
    print(f"added per run: {via - direct:+.2f} s (target <= 3 s); ratio {via / direct:.2f}")
    print(f"torch threads on both sides: {threads}; load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
