"""Where a run's files live under the output folder (default ./runs/)."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_OUTPUT = "runs"
# a run's final weights and final EMA weights, in its folder: what a run-named teacher or fine-tune source reads
MODEL = "model.pt"
EMA_MODEL = "model_ema.pt"


def output_root(path: str | os.PathLike[str] | None = None) -> Path:
    return Path(path or os.environ.get("HARNESS_OUTPUT", DEFAULT_OUTPUT))


def default_db_url(root: Path | None = None) -> str:
    if os.environ.get("HARNESS_DB"):
        return os.environ["HARNESS_DB"]
    return f"sqlite:///{(root or output_root()) / 'harness.db'}"


def run_dir(root: Path, full_hash: str) -> Path:
    """A run's folder: checkpoints, final weights and its log."""
    return root / "jobs" / full_hash[:16]


def log_dir(root: Path) -> Path:
    """submitit's folder of job logs and pickles."""
    return root / "submitit"
