"""What a submitted job runs: one training run, its metrics written to the results store.

`RunJob` is pickled by submitit and executed in the job's process. It holds the claim's owner token of the
launcher that submitted it (harness/states.py): it marks the run started only while that claim holds,
keeps a heartbeat going that renews the claim, trains through `harness.trainer.train`, and records how the
run ended. A heartbeat that finds the run no longer its own (cancelled, or given up and claimed again) stops
the training at the next step. The store URL it carries has no password (harness/launch/secrets.py). On a
cluster it is checkpointable: a time limit or preemption requeues it, and the trainer resumes from the
run's last checkpoint.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import threading
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import submitit

from harness import paths, registry
from harness.config import RunConfig
from harness.launch import logs
from harness.launch.interrupts import signal_name
from harness.launch.protocols import RunStore

HEARTBEAT_S = 30.0


class ClaimLost(RuntimeError):
    """The run is no longer this job's to train (cancelled, or given up and claimed by another launcher)."""


class Heartbeat:
    """Beats every `every_s` seconds in a thread; remembers why the job must stop once the store says so."""

    def __init__(self, store: RunStore, run_hash: str, token: str, every_s: float = HEARTBEAT_S):
        self.store, self.run_hash, self.token = store, run_hash, token
        self.every_s = every_s
        self.reason: str | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{run_hash[:10]}", daemon=True)

    def start(self) -> "Heartbeat":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._done.set()

    def should_stop(self) -> str | None:
        """The trainer asks this every step: a reason to stop, or None."""
        return self.reason

    def beat(self, epoch: int | None = None) -> bool:
        """One beat now; False (and `reason` set) when the run is no longer this job's."""
        if self.store.heartbeat(self.run_hash, self.token, epoch=epoch):
            return True
        record = self.store.get_run(self.run_hash)
        if record is not None and record.status == "cancelled":
            self.reason = f"cancelled: {record.error or 'by the user'}"
        else:
            state = record.status if record is not None else "gone from the store"
            self.reason = f"this job no longer owns the run (its state: {state})"
        return False

    def _loop(self) -> None:
        while not self._done.wait(self.every_s) and self.reason is None:
            try:
                self.beat()
            except Exception as exc:  # a store out of reach: the run goes on, its lease says how long
                print(f"harness: heartbeat not recorded: {_one_line(exc)}", file=sys.stderr, flush=True)


class StoreSink:
    """The trainer's MetricSink, writing into the results store; each epoch also beats the heartbeat."""

    def __init__(self, store: RunStore, run_hash: str, heartbeat: Heartbeat):
        self.store = store
        self.run_hash = run_hash
        self.heartbeat = heartbeat

    def log_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        self.store.log_epoch(self.run_hash, epoch, metrics)
        self.heartbeat.beat(epoch=epoch)

    def log_final(self, metrics: Mapping[str, float], info: Mapping[str, str]) -> None:
        self.store.log_final(self.run_hash, metrics, info)

    def log_predictions(self, name: str, predictions: np.ndarray) -> None:
        self.store.log_predictions(self.run_hash, name, predictions)


@dataclass
class RunJob(submitit.helpers.Checkpointable):
    run_hash: str
    config: dict[str, Any]
    # the store URL without its password (the job finds it in its environment)
    db_url: str
    output: str
    # the owner token of the claim under which the launcher submitted this job
    owner: str
    requeues: int = 0
    # requeues allowed after a time limit or preemption (from harness.launch.slurm.SlurmConfig)
    max_requeues: int = 0
    # torch CPU threads (None: torch's default, which honours OMP_NUM_THREADS)
    threads: int | None = None
    # seconds between heartbeats while it trains
    heartbeat_s: float = HEARTBEAT_S

    def __call__(self) -> dict[str, float]:
        from harness.provenance import collect
        from harness.store import open_store
        from harness.trainer import RunStopped, train

        if self.threads:
            import torch

            torch.set_num_threads(self.threads)
        if threading.current_thread() is threading.main_thread():
            # a local launch starts its jobs ignoring Ctrl-C (harness.launch.interrupts): the training itself
            # listens again, so that a stop becomes a recorded cancellation
            signal.signal(signal.SIGINT, signal.default_int_handler)
        root = Path(self.output)
        directory = paths.run_dir(root, self.run_hash)
        directory.mkdir(parents=True, exist_ok=True)
        run_config = RunConfig.model_validate(self.config)
        from harness.launch.processes import hostname

        # the first line of every job's log: `harness logs` finds all the jobs of a resumed run by it
        print(logs.start_line(self.run_hash, hostname(), datetime.now(timezone.utc).isoformat(timespec="seconds")),
              flush=True)
        # imported before the provenance is collected, which records the lab's modules and their SHA-256
        registry.import_modules(run_config.imports)
        resolve = lambda other: paths.run_dir(root, other)  # noqa: E731
        if _global_rank() != 0:
            # the other tasks of a multi-GPU job train beside rank 0, which alone reports to the store
            return train(run_config, directory, _NullSink(), resolve)
        store = open_store(self.db_url, create=False)
        if not store.mark_started(self.run_hash, self.owner, hostname(), collect()):
            raise ClaimLost(_not_ours(store, self.run_hash))
        heartbeat = Heartbeat(store, self.run_hash, self.owner, self.heartbeat_s).start()
        try:
            final = train(run_config, directory, StoreSink(store, self.run_hash, heartbeat), resolve,
                          should_stop=heartbeat.should_stop)
        except SystemExit:
            raise  # submitit requeued the job (time limit, preemption); checkpoint() recorded it
        except RunStopped:
            raise  # the store already says why (cancelled, or another owner): nothing of ours to record
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):  # Ctrl-C or a signal: a stop, not a fault of the run
                self._record_end(store, "cancelled", f"stopped by {signal_name(exc)}")
            else:
                self._record_end(store, "failed", _describe(exc))
            raise
        finally:
            heartbeat.stop()
        self._record_end(store, "completed", None)
        return final

    def _record_end(self, store: RunStore, status: str, error: str | None) -> None:
        """Record the run's end; a store that cannot take it (a full disk, a lost server) never hides the cause."""
        try:
            if not store.finish(self.run_hash, self.owner, status, error=error):
                print(f"harness: the run ended {status}, but {_not_ours(store, self.run_hash)}",
                      file=sys.stderr, flush=True)
        except Exception as exc:
            print(f"harness: could not record that the run ended {status}: {_one_line(exc)}"
                  + (f"\nharness: it ended because: {error}" if error else ""), file=sys.stderr, flush=True)

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission | None:
        """Called by submitit on time-out or preemption: requeue, the trainer resumes from its checkpoint."""
        from harness.store import open_store

        store = open_store(self.db_url, create=False)
        if self.requeues >= self.max_requeues:
            store.finish(self.run_hash, self.owner, "failed",
                         error=f"time limit reached after {self.requeues} requeues")
            return None
        store.requeue(self.run_hash, self.owner)
        again = dataclasses.replace(self, requeues=self.requeues + 1)
        return submitit.helpers.DelayedSubmission(again)


def _not_ours(store: RunStore, run_hash: str) -> str:
    record = store.get_run(run_hash)
    if record is None:
        return "the run is not in the store"
    return f"the run is no longer this job's (state {record.status}: {record.error or 'claimed by another launch'})"


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


def _one_line(exc: BaseException) -> str:
    from harness.provenance import redact

    text = str(exc).strip().splitlines()
    return redact(f"{type(exc).__name__}: {text[0] if text else ''}")


def _describe(exc: BaseException) -> str:
    lines = traceback.format_exception_only(type(exc), exc)
    return "".join(lines).strip()[-2000:]
