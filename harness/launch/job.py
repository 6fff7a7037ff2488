"""What a submitted job runs: one training run, its metrics written to the results store.

`RunJob` is pickled by submitit and executed in the job's process. It marks the run
started, keeps a heartbeat going, trains through `harness.trainer.train` with a sink
that writes to the store, and records completion or the error. On a cluster it is
checkpointable: a time limit or preemption requeues it, and the trainer resumes from
the run's last checkpoint.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import submitit

from harness import paths
from harness.config import RunConfig

HEARTBEAT_S = 30.0


class StoreSink:
    """The trainer's MetricSink, writing into the results store."""

    def __init__(self, store: Any, run_hash: str):
        self.store = store
        self.run_hash = run_hash

    def log_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        self.store.log_epoch(self.run_hash, epoch, metrics)
        self.store.heartbeat(self.run_hash, epoch=epoch)

    def log_final(self, metrics: Mapping[str, float], info: Mapping[str, str]) -> None:
        self.store.log_final(self.run_hash, metrics, info)

    def log_predictions(self, name: str, predictions: np.ndarray) -> None:
        self.store.log_predictions(self.run_hash, name, predictions)


@dataclass
class RunJob(submitit.helpers.Checkpointable):
    run_hash: str
    config: dict[str, Any]
    db_url: str
    output: str
    requeues: int = 0
    max_requeues: int = 3
    # CPU threads for this run (None: torch's default)
    threads: int | None = None

    def __call__(self) -> dict[str, float]:
        from harness.provenance import collect
        from harness.store import open_store
        from harness.trainer import train

        if self.threads:
            import torch

            torch.set_num_threads(self.threads)
        store = open_store(self.db_url)
        root = Path(self.output)
        directory = paths.run_dir(root, self.run_hash)
        directory.mkdir(parents=True, exist_ok=True)
        run_config = RunConfig.model_validate(self.config)
        resolve = lambda other: paths.run_dir(root, other)  # noqa: E731
        if _global_rank() != 0:
            # the other tasks of a multi-GPU job train beside rank 0, which alone reports to the store
            return train(run_config, directory, _NullSink(), resolve)
        store.mark_started(self.run_hash, socket.gethostname(), collect())
        stop = threading.Event()
        beat = threading.Thread(target=_heartbeat, args=(store, self.run_hash, stop), daemon=True)
        beat.start()
        try:
            final = train(run_config, directory, StoreSink(store, self.run_hash), resolve)
        except SystemExit:
            # submitit requeued the job (time limit, preemption); checkpoint() recorded "requeued"
            stop.set()
            raise
        except BaseException as exc:
            stop.set()
            status = "cancelled" if isinstance(exc, KeyboardInterrupt) else "failed"
            store.set_status(self.run_hash, status, error=_describe(exc))
            raise
        stop.set()
        store.set_status(self.run_hash, "completed")
        return final

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission | None:
        """Called by submitit on time-out or preemption: requeue, the trainer resumes from its checkpoint."""
        from harness.store import open_store

        store = open_store(self.db_url)
        if self.requeues >= self.max_requeues:
            store.set_status(self.run_hash, "failed", error=f"time limit reached after {self.requeues} requeues")
            return None
        store.set_status(self.run_hash, "requeued")
        again = dataclasses.replace(self, requeues=self.requeues + 1)
        return submitit.helpers.DelayedSubmission(again)


def _global_rank() -> int:
    try:
        return submitit.JobEnvironment().global_rank
    except RuntimeError:  # not inside a submitit job (called directly, or under torchrun)
        return int(os.environ.get("RANK", "0"))


class _NullSink:
    def log_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        pass

    def log_final(self, metrics: Mapping[str, float], info: Mapping[str, str]) -> None:
        pass

    def log_predictions(self, name: str, predictions: np.ndarray) -> None:
        pass


def _heartbeat(store: Any, run_hash: str, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_S):
        try:
            store.heartbeat(run_hash)
        except Exception:  # a missed beat must never kill the run it reports on
            pass


def _describe(exc: BaseException) -> str:
    lines = traceback.format_exception_only(type(exc), exc)
    return "".join(lines).strip()[-2000:]
