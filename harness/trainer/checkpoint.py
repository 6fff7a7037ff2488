"""A run's checkpoint: written atomically after every epoch, read back to resume, with every RNG's state.

Resuming restores the model, optimizer, schedule, EMA weights, per-epoch history, training time and the
random state of every process, so an interrupted run continues exactly where it stopped.

Writing goes through a temporary file unique to the writer (pid and a random suffix) that is renamed to the
writer's own name for the file (`MetricSink.file_name`: one no other writer of the run can hold), so a crash
mid-write never leaves a half file under that name; a failed write (a full disk) removes its temporary file and
raises `CheckpointError` naming the file and the OS's reason. The file becomes the run's checkpoint only when
the sink publishes it with its epoch's metrics; reading back takes the published file and checks its SHA-256.
A checkpoint that cannot be read back (truncated, corrupt) is moved aside with a warning and the run starts
afresh, rather than failing every retry on the same file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import secrets
import shutil
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from harness.paths import RunFile
from harness.weights import file_sha256



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
    np_state: Any = np.random.get_state()  # the legacy tuple; numpy's stub allows a dict too
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


# the name of a run's checkpoint outside a store (harness.trainer.sink.MemorySink publishes it under it)
CHECKPOINT = "checkpoint.pt"


class CheckpointError(OSError):
    """A checkpoint or weights file could not be written; the message names the file and the OS's reason."""


# free bytes below which a failed write is put down to a full disk
NEARLY_FULL = 1 << 20


def save_atomic(obj, path: Path) -> RunFile:
    """Write `obj` to `path` (a name of this writer's own) through a temporary file; the file and its SHA-256."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        torch.save(obj, tmp)
        digest = file_sha256(tmp)
        os.replace(tmp, path)
        return RunFile(path, digest)
    except BaseException as exc:
        free = _free_bytes(path.parent)  # measured before the partial file is removed
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(exc, (OSError, RuntimeError)):
            code, cause = _cause(exc, free)
            raise CheckpointError(code, f"could not write {path}: {cause}") from exc
        raise


def _cause(exc: BaseException, free: int | None) -> tuple[int, str]:
    """errno and words for a failed write. torch's zip writer reports a full disk as a RuntimeError about file
    positions, without an errno: the free space left says what it was."""
    code = getattr(exc, "errno", None)
    if code:
        return code, os.strerror(code)
    if free is not None and free < NEARLY_FULL:
        return errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} ({free:,} bytes free)"
    return errno.EIO, str(exc)


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def save_checkpoint(path: Path, model: nn.Module, optimizer, scheduler, ema, progress: Progress,
                    rngs: list[dict], scaler=None) -> RunFile:
    """`rngs`: every process's RNG state, in rank order; `scaler`: fp16's gradient scaler (None: none)."""
    return save_atomic({
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "ema": ema.module.state_dict() if ema is not None else None,
        "epoch": progress.next_epoch - 1, "history": progress.history,
        "train_time_s": progress.train_time_s, "train_samples": progress.train_samples, "rng": rngs,
        "scaler": scaler.state_dict() if scaler is not None else None,
    }, path)


# what every checkpoint holds; one without them is as unreadable as a truncated one
_KEYS = frozenset({"model", "optimizer", "scheduler", "history", "train_time_s", "train_samples", "rng"})


def _set_aside(path: Path) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while aside.exists():
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        n += 1
    os.replace(path, aside)
    return aside


def read_checkpoint(file: RunFile | Path | None, rank: int = 0) -> dict | None:
    """The published checkpoint `file`, or None when there is none or it is unreadable or not the file that was
    published (its SHA-256 differs): then process 0 moves it aside as `<name>.corrupt-<UTC time>`, and a warning
    on stderr names it."""
    if isinstance(file, Path):  # a file by path: read as it is
        file = RunFile(file, None)
    if file is None or not file.path.exists():
        return None
    path = file.path
    try:
        if file.sha256 is not None and (found := file_sha256(path)) != file.sha256:
            raise ValueError(f"its SHA-256 is {found}, not the {file.sha256} it was published with")
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        missing = _KEYS - set(ckpt) if isinstance(ckpt, dict) else _KEYS
        if missing:
            raise ValueError(f"it lacks {', '.join(sorted(missing))}")
    except OSError:
        raise  # the file could not be read (permissions, I/O): not evidence that it is corrupt
    except Exception as exc:  # truncated zip, bad pickle, wrong content: anything torch.load may raise
        where = f"moved to {_set_aside(path).name}" if rank == 0 else "process 0 moves it aside"
        print(f"warning: checkpoint {path} is unreadable ({type(exc).__name__}: {exc}); {where}; "
              f"the run restarts from scratch", file=sys.stderr, flush=True)
        return None
    return ckpt


def resume(file: RunFile | Path | None, model: nn.Module, optimizer, scheduler, ema, rank: int,
           scaler=None) -> Progress:
    """Restore everything from the published checkpoint `file`; a fresh Progress when there is none (or it is
    unreadable)."""
    ckpt = read_checkpoint(file, rank)
    if ckpt is None:
        return Progress()
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    if ema is not None and ckpt.get("ema") is not None:
        ema.module.load_state_dict(ckpt["ema"])
    if scaler is not None and ckpt.get("scaler") is not None:
        scaler.load_state_dict(ckpt["scaler"])
    set_rng_state(ckpt["rng"][rank] if rank < len(ckpt["rng"]) else ckpt["rng"][0])
    return Progress(list(ckpt["history"]), ckpt["train_time_s"], ckpt["train_samples"])
