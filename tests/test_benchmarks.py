"""Every benchmark script runs: each `benchmarks/*.py` once, with the arguments its docstring's `Smallest run:`
line gives, in a fresh process, so that a benchmark broken by a change fails CI instead of the next GPU day.

The scripts are discovered, not listed: a new script is run as soon as it exists, and a script without a
`Smallest run:` line fails here. `benchmarks/gpu/run.sh --rehearse` (the GPU day rehearsed on a CPU) is tested
in tests/test_gpu_rehearsal.py.
"""

from __future__ import annotations

import ast
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCHMARKS = REPO / "benchmarks"
MARK = "Smallest run:"
# a script's smallest run on a busy 2-core machine; far above what each needs
TIMEOUT_S = 300


def benchmark_scripts() -> list[Path]:
    """Every script under benchmarks/ (a file with a `__main__` block; helper modules have none)."""
    return sorted(p for p in BENCHMARKS.rglob("*.py") if "__main__" in p.read_text())


def smallest_run(script: Path) -> list[str]:
    """The command of the script's `Smallest run:` docstring line, run by this test's Python."""
    doc = ast.get_docstring(ast.parse(script.read_text())) or ""
    lines = [line.split(MARK, 1)[1].strip() for line in doc.splitlines() if MARK in line]
    if len(lines) != 1:
        pytest.fail(f"{script.relative_to(REPO)}: its docstring needs exactly one '{MARK} python {script.relative_to(REPO)} ...' line")
    words = shlex.split(lines[0])
    if words[:2] != ["python", str(script.relative_to(REPO))]:
        pytest.fail(f"{script.relative_to(REPO)}: '{MARK}' must start with 'python {script.relative_to(REPO)}', not {lines[0]!r}")
    return [sys.executable, *words[1:]]


def test_the_benchmarks_are_found() -> None:
    names = {p.name for p in benchmark_scripts()}
    assert {"trainer_speed.py", "store_speed.py", "launch_overhead.py", "inference.py", "planner.py"} <= names
    assert "markdown.py" not in names


@pytest.mark.slow
@pytest.mark.parametrize("script", benchmark_scripts(), ids=lambda p: str(p.relative_to(BENCHMARKS)))
def test_benchmark_runs_with_its_smallest_arguments(script: Path) -> None:
    command = smallest_run(script)
    # one torch thread: a busy shared machine makes several spin against each other
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert done.stdout.strip(), f"{script.name} printed nothing"
