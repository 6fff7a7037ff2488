"""A run's checkpoint: written atomically after every epoch, read back to resume, with every RNG's state.

Resuming restores the model, optimizer, schedule, EMA weights, per-epoch history, training time and the
random state of every process, so an interrupted run continues exactly where it stopped.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

# the files a run directory holds: the last epoch's checkpoint, the final weights, the final EMA weights
CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"
EMA_MODEL = "model_ema.pt"


@dataclass
class Progress:
    """How far a run has come: the metrics of each finished epoch and the training time and images so far."""

    history: list[dict[str, float]] = field(default_factory=list)
    train_time_s: float = 0.0
    train_samples: int = 0

    @property
    def next_epoch(self) -> int:
        return len(self.history)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), np_state[2], np_state[3], np_state[4]],
        "python": random.getstate(),
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))


def save_atomic(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_checkpoint(path: Path, model: nn.Module, optimizer, scheduler, ema, progress: Progress,
                    rngs: list[dict]) -> None:
    """`rngs`: every process's RNG state, in rank order."""
    save_atomic({
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "ema": ema.module.state_dict() if ema is not None else None,
        "epoch": progress.next_epoch - 1, "history": progress.history,
        "train_time_s": progress.train_time_s, "train_samples": progress.train_samples, "rng": rngs,
    }, path)


def resume(path: Path, model: nn.Module, optimizer, scheduler, ema, rank: int) -> Progress:
    """Restore everything from the checkpoint at `path`; a fresh Progress when there is none."""
    if not path.exists():
        return Progress()
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    if ema is not None and ckpt.get("ema") is not None:
        ema.module.load_state_dict(ckpt["ema"])
    set_rng_state(ckpt["rng"][rank] if rank < len(ckpt["rng"]) else ckpt["rng"][0])
    return Progress(list(ckpt["history"]), ckpt["train_time_s"], ckpt["train_samples"])
