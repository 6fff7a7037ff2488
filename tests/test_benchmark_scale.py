"""benchmarks/scale.py runs end to end with its smallest arguments (the figures themselves are for the README)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.tiny_spec import REPO, harness_env

# a benchmark at store sizes: the full suite's, not the fast lane's
pytestmark = pytest.mark.slow


def test_scale_benchmark_runs_with_tiny_sizes(tmp_path):
    script = REPO / "benchmarks" / "scale.py"
    smallest = re.search(r"Smallest run: python benchmarks/scale.py (.*)", script.read_text()).group(1).split()
    done = subprocess.run([sys.executable, str(script), *smallest], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env=harness_env(PYTHONPATH=str(REPO)))
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    for figure in ("query", "load", "status", "report", "plan"):
        assert re.search(rf"^{figure} +[\d.]+ +[\d.]+ \(x[\d.]+\)$", out, re.MULTILINE), out
    # the harness and MLflow find the same runs with the same filter, at each size
    kept = re.findall(r"the filter keeps (\d+) runs", out)
    assert kept and re.findall(r"runs\(where=FILTER\) finds (\d+)", out) == kept
    if "mlflow query:" not in out:  # mlflow importable: its column is there, finding the same runs
        assert re.findall(r"search_runs finds (\d+)", out) == kept
        assert re.search(r"^mlflow query +[\d.]+", out, re.MULTILINE)
