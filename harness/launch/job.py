"""What a submitted job runs: one training run, its metrics written to the results store.

`RunJob` is pickled by submitit and executed in the job's process. It holds the claim's owner token of the
launcher that submitted it (harness/states.py): it marks the run started only while that claim holds,
keeps a heartbeat going that renews the claim (every tenth of `harness.states.lease()`), and trains through
`harness.trainer.train`, writing every result under the claim: the store refuses a write whose token no
longer holds the run (`NotOwner`), and the job stops at once, with no further epoch, final phase or file
published: its files carry its own token in their names and become the run's only through those fenced writes
(`StoreSink`), so what it wrote and could not publish is removed, and nobody else's is touched. A run taken over by another launch ends the job with `ClaimLost`, "taken over
by another launch"; a cancelled run ends it with the store already saying so.

A store out of reach (a database restart) does not stop the training: results wait in order in the sink's
backlog and are written once the store answers, the final ones waiting for it as long as the store's
patience; a heartbeat that cannot be written is skipped. The store URL it carries has no password
(harness/launch/secrets.py). On a cluster it is checkpointable: a time limit or preemption requeues it, and
the trainer resumes from the run's last checkpoint.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import submitit

from harness import paths, registry
from harness.paths import CHECKPOINT_ROLE as CHECKPOINT, RunFile
from harness.config import RunConfig
from harness.launch import logs
from harness.launch.ending import TAKEN_OVER, taken_over
from harness.launch.interrupts import signal_name
from harness.launch.logs import named
from harness.launch.protocols import RunStore
from harness.states import RunState, renew_every_s
from harness.store.errors import NotOwner, StoreUnreachable
from harness.store.records import FileRecord
from harness.words import first_line

# the longest pause between two tries of a job's backlog while the store is out of reach
BACKLOG_PAUSE_S = 30.0


class ClaimLost(RuntimeError):
    """The run is no longer this job's to train (cancelled, or given up and claimed by another launcher)."""


class Heartbeat:
    """Beats every `every_s` seconds (default: a tenth of the lease) in a thread; remembers why the job must
    stop once the store says so."""

    def __init__(self, store: RunStore, run_hash: str, token: str, every_s: float | None = None):
        self.store, self.run_hash, self.token = store, run_hash, token
        self.every_s = every_s or renew_every_s()
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
        if record is not None and record.status == RunState.CANCELLED:
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
                print(f"harness: heartbeat not recorded: {first_line(exc, named=True)}", file=sys.stderr, flush=True)


Write = Callable[[RunStore], None]

# tests only: a folder where a job stops between writing a file and publishing it, while `hold-<role>` is there
# (it creates `reached-<role>` first), so that a test can freeze it exactly in that window
PUBLISH_BARRIER = "HARNESS_TEST_PUBLISH_BARRIER"


class _Entry:
    """One write of the backlog: the write, the epoch it beats the heartbeat with, and the files it publishes
    (dropped, and removed, when a newer checkpoint is added before it could be written)."""

    def __init__(self, write: Callable[["_Entry", RunStore], None], epoch: int | None,
                 files: dict[str, RunFile]) -> None:
        self.write, self.epoch, self.files = write, epoch, files


class StoreSink:
    """The trainer's MetricSink, writing into the results store under the job's claim (`token`).

    Writes go through a backlog, in the order the trainer made them. Each is tried at once on `quick` (the
    store without patience); while the store is out of reach they stay in the backlog and the training goes on,
    the backlog being tried again at later epochs (after a pause that doubles, up to `BACKLOG_PAUSE_S`). The
    final results wait on `store`, for as long as its patience. A write the store refuses raises `NotOwner`
    into the trainer: the training ends there, and the files this job wrote but could not publish are removed.
    Each written epoch also beats the heartbeat.

    Files are fenced like rows: the trainer writes them under names holding this claim's token (`file_name`), and
    each becomes the run's checkpoint or weights only in the fenced write of its epoch's metrics or of the final
    results. Once a newer checkpoint is published, the one published before (this job's, or an earlier owner's)
    is removed.
    """

    def __init__(self, store: RunStore, quick: RunStore, run_hash: str, token: str, heartbeat: Heartbeat):
        self.store, self.quick = store, quick
        self.run_hash, self.token = run_hash, token
        self.heartbeat = heartbeat
        self.backlog: list[_Entry] = []
        self._retry_at = 0.0
        self._pause = 1.0
        # the checkpoint the run has published last (removed once this job publishes a newer one)
        self._checkpoint: Path | None = None

    # the run's live MLflow copy (harness.export.live), when the launch asked for one
    live: Any = None

    def file_name(self, role: str, epoch: int | None = None) -> str:
        return f"{role}.{self.token}" + (f".e{epoch}" if epoch is not None else "") + ".pt"

    def published(self, role: str, run_dir: Path) -> RunFile | None:
        found = self.store.run_files(self.run_hash).get(role)
        if found is None:
            return None
        file = RunFile(Path(run_dir) / found.name, found.sha256)
        if role == CHECKPOINT:
            self._checkpoint = file.path
        return file

    def log_epoch(self, epoch: int, metrics: Mapping[str, float], checkpoint: RunFile | None = None) -> None:
        values, ended = dict(metrics), datetime.now(timezone.utc)
        if checkpoint is not None:
            _barrier(CHECKPOINT)
            for older in self.backlog:  # a newer checkpoint makes one not published yet useless
                if CHECKPOINT in older.files:
                    _remove(older.files.pop(CHECKPOINT).path)

        def write(entry: _Entry, store: RunStore) -> None:
            file = entry.files.get(CHECKPOINT)
            store.log_epoch(self.run_hash, epoch, values, token=self.token, ended_at=ended,
                            checkpoint=FileRecord(file.path.name, file.sha256 or "") if file else None)

        self._add(_Entry(write, epoch, {CHECKPOINT: checkpoint} if checkpoint is not None else {}))
        if self.live is not None:
            self.live.log_epoch(epoch, values, ended)

    def log_predictions(self, name: str, predictions: np.ndarray) -> None:
        array = np.array(predictions)  # a copy: the trainer may reuse its buffer while the store is away
        self._add(_Entry(lambda entry, store: store.log_predictions(self.run_hash, name, array, token=self.token),
                         None, {}))

    def log_final(self, metrics: Mapping[str, float], info: Mapping[str, str],
                  files: Mapping[str, RunFile] | None = None) -> None:
        values, facts = dict(metrics), dict(info)
        for role in files or {}:
            _barrier(role)

        def write(entry: _Entry, store: RunStore) -> None:
            store.log_final(self.run_hash, values, facts, token=self.token,
                            files={role: FileRecord(f.path.name, f.sha256 or "") for role, f in entry.files.items()})

        self.backlog.append(_Entry(write, None, dict(files or {})))
        self.flush(wait=True)

    def flush(self, wait: bool) -> bool:
        """Write the backlog in order; True when it is empty. Without `wait`, a store out of reach (or a pause
        not over yet) leaves the rest for later; with it, the store's patience is waited out."""
        if not wait and self.backlog and time.monotonic() < self._retry_at:
            return False
        while self.backlog:
            entry = self.backlog[0]
            try:
                entry.write(entry, self.store if wait else self.quick)
            except StoreUnreachable as exc:
                if wait:
                    raise
                self._put_off(exc)
                return False
            except NotOwner:
                # another launch holds the run: what this job wrote and could not publish is nobody's
                for pending in self.backlog:
                    for file in pending.files.values():
                        _remove(file.path)
                raise
            self.backlog.pop(0)
            if CHECKPOINT in entry.files:
                published = entry.files[CHECKPOINT].path
                if self._checkpoint is not None and self._checkpoint != published:
                    _remove(self._checkpoint)
                self._checkpoint = published
            if entry.epoch is not None:
                self._beat(entry.epoch)
        if self._pause > 1.0:
            print("harness: the results store answers again; the results kept meanwhile are written",
                  file=sys.stderr, flush=True)
            self._pause = 1.0
        return True

    def _add(self, entry: _Entry) -> None:
        self.backlog.append(entry)
        self.flush(wait=False)

    def _put_off(self, exc: StoreUnreachable) -> None:
        if self._pause == 1.0:
            print(f"harness: {first_line(exc, named=True)}; training goes on, its results are kept to be written later",
                  file=sys.stderr, flush=True)
        self._retry_at = time.monotonic() + self._pause
        self._pause = min(BACKLOG_PAUSE_S, self._pause * 2)

    def _beat(self, epoch: int) -> None:
        try:
            alive = self.heartbeat.beat(epoch=epoch)
        except StoreUnreachable:
            return  # the next write or beat tries again
        if not alive:
            raise NotOwner(f"run {self.run_hash[:10]}: {self.heartbeat.reason}")


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
    # seconds between heartbeats while it trains (None: a tenth of the lease, HARNESS_LEASE_S)
    heartbeat_s: float | None = None
    # MLflow tracking URI to copy each epoch to as it ends (None: none; harness.export.live)
    mlflow: str | None = None

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
        # a job has no one waiting on it: it waits out a store that is out of reach, as long as the store's patience
        store = open_store(self.db_url, create=False, wait=True)
        resolve = published_by(store, root)
        if _global_rank() != 0:
            # the other tasks of a multi-GPU job train beside rank 0, which alone reports to the store
            return train(run_config, directory, _NullSink(), resolve)
        from harness.launch.processes import hostname

        if not store.mark_started(self.run_hash, self.owner, hostname(), collect()):
            raise ClaimLost(_not_ours(store, self.run_hash))
        # the run is this job's now: a stale writer's files go (one that wakes later removes its own)
        remove_unpublished(directory, store.run_files(self.run_hash))
        quick = store.with_patience(0.0)
        heartbeat = Heartbeat(quick, self.run_hash, self.owner, self.heartbeat_s).start()
        sink = StoreSink(store, quick, self.run_hash, self.owner, heartbeat)
        sink.live = _live_tracker(self.mlflow, store, self.run_hash)
        try:
            final = train(run_config, directory, sink, resolve, should_stop=heartbeat.should_stop)
        except SystemExit:
            raise  # submitit requeued the job (time limit, preemption); checkpoint() recorded it
        except (RunStopped, NotOwner) as exc:
            # a refused write or beat: nothing more of ours is written. Cancelled, the store already says so
            heartbeat.stop()
            record = store.get_run(self.run_hash)
            if taken_over(record, self.owner):
                print(f"harness: {TAKEN_OVER}: {first_line(exc, named=True)}", file=sys.stderr, flush=True)
                raise ClaimLost(f"{TAKEN_OVER} (the run is {record.status if record else 'gone'} under its claim)"
                                ) from None
            raise
        except BaseException as exc:
            heartbeat.stop()
            if isinstance(exc, KeyboardInterrupt):  # Ctrl-C or a signal: a stop, not a fault of the run
                self._record_end(store, RunState.CANCELLED, f"stopped by {signal_name(exc)}", sink)
            else:
                self._record_end(store, RunState.FAILED, _describe(exc), sink)
            raise
        finally:
            heartbeat.stop()
        self._record_end(store, RunState.COMPLETED, None, sink)
        return final

    def _record_end(self, store: RunStore, status: str, error: str | None, sink: StoreSink) -> None:
        """Record the run's end; a store that cannot take it (a full disk, a lost server) never hides the cause."""
        try:
            if status != RunState.COMPLETED:
                sink.flush(wait=False)  # the epochs kept through an outage, if the store answers now
            if not store.finish(self.run_hash, self.owner, status, error=error):
                print(f"harness: the run ended {status}, but {_not_ours(store, self.run_hash)}",
                      file=sys.stderr, flush=True)
            if sink.live is not None:
                sink.live.close(status=status)
        except Exception as exc:
            print(f"harness: could not record that the run ended {status}: {first_line(exc, named=True)}"
                  + (f"\nharness: it ended because: {error}" if error else ""), file=sys.stderr, flush=True)

    # None: no requeue, which submitit allows though its stub's return type does not say so
    def checkpoint(  # type: ignore[override]
            self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission | None:
        """Called by submitit on time-out or preemption: requeue, the trainer resumes from its checkpoint."""
        from harness.store import open_store

        store = open_store(self.db_url, create=False, wait=True)
        if self.requeues >= self.max_requeues:
            store.finish(self.run_hash, self.owner, RunState.FAILED,
                         error=f"time limit reached after {self.requeues} requeues")
            return None
        store.requeue(self.run_hash, self.owner)
        again = dataclasses.replace(self, requeues=self.requeues + 1)
        return submitit.helpers.DelayedSubmission(again)


def _live_tracker(uri: str | None, store: RunStore, run_hash: str) -> Any:
    """The run's live MLflow tracker, started; None without a URI (or without mlflow: the export says why)."""
    if not uri:
        return None
    from harness.export.live import LiveTracker

    record = store.get_run(run_hash)
    return LiveTracker(uri, record).start() if record is not None else None


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:  # a file left behind is removed by the run's next owner
        print(f"harness: could not remove {path}: {first_line(exc, named=True)}", file=sys.stderr, flush=True)


def remove_unpublished(run_dir: Path, published: Mapping[str, FileRecord]) -> None:
    """Remove every file of the run's folder that no record names: what a stale writer (an earlier owner, frozen
    or killed between writing a file and publishing it) left there. Never read, it would only fill the disk."""
    keep = {f.name for f in published.values()}
    for path in run_dir.iterdir():
        if path.is_file() and path.name not in keep and (path.suffix == ".pt" or ".tmp-" in path.name):
            _remove(path)


def _barrier(role: str) -> None:
    """The test hook of `PUBLISH_BARRIER`: wait, the file written, until the test lets it be published."""
    folder = os.environ.get(PUBLISH_BARRIER)
    if not folder or not (Path(folder) / f"hold-{role}").exists():
        return
    (Path(folder) / f"reached-{role}").touch()
    while (Path(folder) / f"hold-{role}").exists():
        time.sleep(0.05)


def _not_ours(store: RunStore, run_hash: str) -> str:
    record = store.get_run(run_hash)
    if record is None:
        return "the run is not in the store"
    return f"the run is no longer this job's (state {record.status}: {record.error or 'claimed by another launch'})"


def published_by(store: RunStore, root: Path) -> Callable[[str, str], RunFile]:
    """Another run's published file of a role (a teacher's weights, a fine-tune source's), from the store."""
    def find(run_hash: str, role: str) -> RunFile:
        found = store.run_files(run_hash).get(role)
        if found is None:
            raise FileNotFoundError(f"run {run_hash[:10]} has published no {role} weights")
        return RunFile(paths.run_dir(root, run_hash) / found.name, found.sha256)

    return find


def _global_rank() -> int:
    try:
        return submitit.JobEnvironment().global_rank
    except RuntimeError:  # not inside a submitit job (called directly, or under torchrun)
        return int(os.environ.get("RANK", "0"))


class _NullSink:
    """The sink of a process other than 0: process 0 alone reports and publishes; these write no file."""

    def file_name(self, role: str, epoch: int | None = None) -> str:
        raise RuntimeError("only process 0 writes a run's files")

    def published(self, role: str, run_dir: Path) -> RunFile | None:
        return None  # process 0's answer is shared with every process (harness.trainer.distributed.from_first)

    def log_epoch(self, epoch: int, metrics: Mapping[str, float], checkpoint: RunFile | None = None) -> None:
        pass

    def log_final(self, metrics: Mapping[str, float], info: Mapping[str, str],
                  files: Mapping[str, RunFile] | None = None) -> None:
        pass

    def log_predictions(self, name: str, predictions: np.ndarray) -> None:
        pass


def _describe(exc: BaseException) -> str:
    lines = traceback.format_exception_only(type(exc), exc)
    return named("".join(lines).strip()[-2000:])
