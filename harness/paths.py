"""Where a run's files live under the output folder (default ./runs/)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_OUTPUT = "runs"
# a run's final weights and final EMA weights, in its folder: what a run-named teacher or fine-tune source reads
MODEL = "model.pt"
EMA_MODEL = "model_ema.pt"
# the roles of the files a run publishes (harness.trainer.sink), and their plain names outside a store
CHECKPOINT_ROLE, MODEL_ROLE, EMA_ROLE = "checkpoint", "model", "model_ema"
PLAIN_NAMES = {CHECKPOINT_ROLE: "checkpoint.pt", MODEL_ROLE: MODEL, EMA_ROLE: EMA_MODEL}


@dataclass(frozen=True)
class RunFile:
    """A file of a run: where it is, and the SHA-256 it was published with (None: published by no store, as a
    run outside one, read as it is)."""

    path: Path
    sha256: str | None


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
