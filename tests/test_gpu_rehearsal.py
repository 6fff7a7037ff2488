"""The GPU day, rehearsed on this CPU: `benchmarks/gpu/run.sh --rehearse` runs every step the GPU machine will
run (the harness end to end through the local executor and its report, inference throughput, training speed
against a bare loop and the reference settings, mixed precision with gradient accumulation against fp32), at
tiny sizes, and writes one markdown file of results.
Also: the wheels `benchmarks/gpu/prepare.sh` fetches cover every dependency the GPU image lacks."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# the GPU day rehearsed on the CPU: the full suite's, not the fast lane's
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
GPU = REPO / "benchmarks" / "gpu"
# what the GPU image (Python 3.12, a stock CUDA PyTorch image) already has among the harness's dependencies
IMAGE_HAS = {"torch", "torchvision", "timm", "huggingface-hub", "safetensors", "pandas", "seaborn", "typer",
             "pyyaml", "scikit-learn", "numpy", "psutil"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_the_wheels_cover_what_the_image_lacks() -> None:
    import tomllib

    deps = {_name(d) for d in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]}
    pinned = {_name(line) for line in (GPU / "wheels.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    assert deps - IMAGE_HAS <= pinned, f"not carried to the GPU machine: {sorted(deps - IMAGE_HAS - pinned)}"
    # psycopg[binary] needs its binary part; pydantic its core
    assert {"psycopg-binary", "pydantic-core"} <= pinned
    assert not pinned & IMAGE_HAS, "a wheel of what the image has would shadow the image's own"


@pytest.mark.slow
def test_the_rehearsal_runs_every_step_and_writes_the_results(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHON=sys.executable, OUT=str(tmp_path), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    done = subprocess.run([str(GPU / "run.sh"), "--rehearse"], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    results = (tmp_path / "RESULTS.md").read_text()
    log = (tmp_path / "run.log").read_text()
    for step in ("harness run", "harness report", "inference", "training speed", "precision and accumulation"):
        assert re.search(rf"_{step}: done in \d+ s", results), f"step '{step}' did not finish:\n{results}\n{log[-4000:]}"
    assert "- torch " in results and "CUDA" in results
    # the harness trained the profile's four runs and reported them
    assert "Table 3" in results
    assert results.count(" completed ") == 4, results
    # one inference row per model, and every training arm
    assert re.search(r"\| deit_tiny_patch4_32 \| 16 \| \d+", results)
    for arm in ("bare", "harness", "bare+compile+fused", "harness+compile+fused", "reference"):
        assert re.search(rf"\| {re.escape(arm)} \| [\d.]+ \|", results), arm
    # precision auto against fp32, both keeping the batch of 32 in two micro-batches of 16 (auto is fp32 on a CPU)
    for asked in ("fp32", "auto"):
        assert re.search(rf"\| {asked} \| fp32 \| 32 \| 16 \| 2 \| \d+ \| \d+ \|", results), asked
