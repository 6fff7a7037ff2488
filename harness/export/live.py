"""A training run's epochs sent to MLflow as they happen: `LiveTracker`, which a job starts beside its store sink.

    tracker = LiveTracker("http://mlflow:5000", record).start()
    tracker.log_epoch(3, {"top1": 71.2}, ended_at)   # returns at once
    tracker.close(wait_s=5.0)

The store stays the truth: the tracker only copies. Its MLflow run is the one `harness export mlflow` writes (the
spec's experiment, the run tagged `harness.hash`), found again by that tag, so a run that resumes, is requeued or
is taken over by another launch continues the same MLflow run. Each epoch goes with its own end time as the
metrics' timestamp and its number as their step, in one `log_batch` with the `harness.epoch` tag (the last epoch
MLflow holds), so an export afterwards adds only what the tracker did not deliver, and a batch sent twice (a reply
lost to a slow server) is the same MLflow rows.

The trainer never waits on MLflow: `log_epoch` appends to a queue that a daemon thread sends in order. A server
that is slow, down or refusing keeps the queue waiting (tries again after a pause that doubles, up to
`PAUSE_S`), like the job's store backlog; what is still queued when the job ends (after `close`'s grace) is
left to the next `harness export mlflow`. A tracker never raises into the job.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque
from datetime import datetime
from typing import TYPE_CHECKING, Any, Mapping

from harness.words import redact
from harness.export.mlflow import EPOCH_TAG, HASH_TAG, MLFLOW_STATUS, NO_SPEC, client_for, run_name

if TYPE_CHECKING:
    from harness.store import RunRecord

ENV = "HARNESS_MLFLOW_URI"
# the longest pause between two tries while MLflow does not answer
PAUSE_S = 30.0
# one request's limits: a server that does not answer within them counts as down (MLflow's own defaults retry
# for minutes, holding the queue back)
REQUEST_TIMEOUT_S = "5"
REQUEST_RETRIES = "0"


def tracking_uri(option: str | None, spec_tracking: Mapping[Any, str] | None = None) -> str | None:
    """The MLflow URI of a launch: `--mlflow`, else $HARNESS_MLFLOW_URI, else the spec's `tracking: {mlflow: URI}`."""
    return option or os.environ.get(ENV) or (spec_tracking or {}).get("mlflow") or None


class LiveTracker:
    """Sends one harness run's epochs to its MLflow run from a background thread (see the module docstring)."""

    def __init__(self, uri: str, record: "RunRecord"):
        self.uri, self.record = uri, record
        self.queue: deque[tuple[int, dict[str, float], datetime]] = deque()
        self._wake = threading.Condition()
        self._closing = False
        # close() asks for one more try at once, whatever the pause
        self._hurry = False
        self._thread: threading.Thread | None = None
        self._run_id: str | None = None
        self._done = -1  # the last epoch MLflow holds
        self._pause = 1.0
        self._said = False

    def start(self) -> "LiveTracker":
        for name, value in (("MLFLOW_HTTP_REQUEST_TIMEOUT", REQUEST_TIMEOUT_S),
                            ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", REQUEST_RETRIES)):
            os.environ.setdefault(name, value)  # the job's own process: its tracker alone talks to MLflow
        self._thread = threading.Thread(target=self._loop, name="harness-mlflow", daemon=True)
        self._thread.start()
        return self

    def log_epoch(self, epoch: int, metrics: Mapping[str, float], ended_at: datetime) -> None:
        with self._wake:
            self.queue.append((epoch, dict(metrics), ended_at))
            self._wake.notify()

    def close(self, wait_s: float = 5.0, status: str | None = None) -> bool:
        """Send what is queued for up to `wait_s` seconds, and the run's end (`status`, a harness state) when all
        of it went; True when MLflow holds every epoch logged. The rest is the next export's."""
        deadline = time.monotonic() + wait_s
        with self._wake:
            self._hurry = True
            self._wake.notify_all()
            while self.queue and time.monotonic() < deadline and self._thread is not None and self._thread.is_alive():
                self._wake.wait(min(0.1, max(0.0, deadline - time.monotonic())))
            self._closing = True
            self._wake.notify()
            sent = not self.queue
        if sent and status is not None and self._run_id is not None:
            try:
                client_for(self.uri).set_terminated(self._run_id, MLFLOW_STATUS.get(status, "FINISHED"))
            except Exception:  # noqa: BLE001 - the export sets it later
                pass
        return sent

    # -- the thread

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self.queue and not self._closing:
                    self._wake.wait()
                if self._closing:
                    return
            try:
                self._send_next()
            except Exception as exc:  # noqa: BLE001 - a tracker never fails a run
                self._put_off(exc)
            else:
                self._pause = 1.0

    def _send_next(self) -> None:
        from mlflow.entities import Metric, RunTag

        client = client_for(self.uri)
        if self._run_id is None:
            self._run_id = self._find_or_create(client)
        epoch, metrics, ended = self.queue[0]
        if epoch > self._done:
            at = int(ended.timestamp() * 1000)
            client.log_batch(self._run_id, metrics=[Metric(k, float(v), at, epoch) for k, v in metrics.items()],
                             tags=[RunTag(EPOCH_TAG, str(epoch))])
            self._done = epoch
        with self._wake:
            self.queue.popleft()
            self._wake.notify_all()
        if self._said:
            print("harness: MLflow answers again; the epochs kept meanwhile are sent", file=sys.stderr, flush=True)
            self._said = False

    def _find_or_create(self, client: Any) -> str:
        name = self.record.spec or NO_SPEC
        found = client.get_experiment_by_name(name)
        experiment_id = found.experiment_id if found is not None else client.create_experiment(
            name, tags={"harness.spec": name})
        runs = client.search_runs([experiment_id], filter_string=f"tags.`{HASH_TAG}` = '{self.record.hash}'",
                                  max_results=1)
        if runs:
            run = runs[0]
            self._done = int(run.data.tags.get(EPOCH_TAG, -1))
            if run.info.status != "RUNNING":
                client.update_run(run.info.run_id, status="RUNNING")
            return str(run.info.run_id)
        start = self.record.started_at or self.record.created_at
        created = client.create_run(experiment_id, start_time=int(start.timestamp() * 1000) if start else None,
                                    run_name=run_name(self.record), tags={HASH_TAG: self.record.hash})
        return str(created.info.run_id)

    def _put_off(self, exc: BaseException) -> None:
        if not self._said:
            text = str(exc).strip().splitlines()
            print(f"harness: MLflow at {redact(self.uri)} did not take epoch {self.queue[0][0]} "
                  f"({type(exc).__name__}: {text[0][:200] if text else ''}); training goes on, the epochs are kept "
                  "and sent when it answers", file=sys.stderr, flush=True)
            self._said = True
        until = time.monotonic() + self._pause
        with self._wake:
            while not self._closing and not self._hurry and time.monotonic() < until:
                self._wake.wait(until - time.monotonic())
            self._hurry = False
        self._pause = min(PAUSE_S, self._pause * 2)
