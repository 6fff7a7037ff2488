"""The store's runs as MLflow runs: `export(store, tracking_uri, spec)`.

One MLflow experiment per spec (named after it), one MLflow run per harness run, found again by its
`harness.hash` tag, so an export never duplicates a run. A run carries tags for its hash, spec, variant,
profile, state, source, device and provenance; its resolved config flattened into params (a param that
MLflow cannot hold, a key over 250 or a value over 6000 characters, goes whole into the artifact
`harness/long_params.json`); every epoch's metrics with step = epoch; its final metrics (throughput,
params, FLOPs, top-1...) as `final.<name>`.

The export is incremental and idempotent: it writes only what MLflow lacks or holds differently. Epochs go
in batches of whole epochs, each batch carrying the tag `harness.epoch` (the last epoch it holds) in the
same call, so an export stopped at any point resumes without logging an epoch twice, and a run trained
further gains only its new epochs. A run trained again from scratch keeps the history already exported.

Exports into one tracking store take turns: each holds an exclusive lock (`export_lock`) from its first look at
MLflow to its last write, so two at once never both find a run missing and create it twice, log an epoch twice,
or race to create a new tracking store's tables. The lock is a file beside a file or SQLite tracking store (on
a shared file system for exports from several machines); for a tracking server it is a file in this machine's
temporary folder, which serialises the exports of one machine only. What MLflow raises is `MlflowFailed`,
named as MLflow's, never as the results store's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence
from urllib.parse import urlparse

from harness import dotted
from harness.config import short_hash
from harness.states import FINISHED, RunState
from harness.store.migrate import file_lock
from harness.words import count

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

    from harness.store import RunRecord, Store

INSTALL = "the MLflow export needs mlflow: pip install 'deit-harness[mlflow]'"
# MLflow's limits (mlflow.utils.validation), restated so this module reads without mlflow installed
KEY_LENGTH = 250
PARAM_LENGTH = 6000
TAG_LENGTH = 8000
PARAMS_PER_BATCH = 100
# tags per batch, leaving room for the batch's `harness.epoch`
TAGS_PER_BATCH = PARAMS_PER_BATCH - 1
ENTITIES_PER_BATCH = 1000
# the experiment of runs that belong to no spec (imported results without one)
NO_SPEC = "harness"
HASH_TAG = "harness.hash"
EPOCH_TAG = "harness.epoch"
LONG_PARAMS = "harness/long_params.json"
# harness run state -> MLflow run status
MLFLOW_STATUS: dict[str, str] = {
    RunState.PENDING: "SCHEDULED", RunState.QUEUED: "SCHEDULED", RunState.SUBMITTED: "SCHEDULED",
    RunState.RUNNING: "RUNNING", RunState.REQUEUED: "RUNNING", RunState.COMPLETED: "FINISHED",
    RunState.FAILED: "FAILED", RunState.CANCELLED: "KILLED",
}
# provenance keys worth a tag (the command line and the platform string stay in the store)
PROVENANCE_TAGS = ("git_commit", "git_dirty", "host", "python", "torch", "timm", "harness", "slurm_job_id", "imports")


class MlflowMissing(LookupError):
    """mlflow is not installed: the message says how to install it."""


@dataclass
class ExportSummary:
    """What one export wrote: per spec, the runs created and updated, epochs and values logged."""

    experiments: list[str] = field(default_factory=list)
    runs_created: int = 0
    runs_updated: int = 0
    runs_unchanged: int = 0
    epochs_logged: int = 0
    values_logged: int = 0

    def line(self) -> str:
        return (f"{count(len(self.experiments), 'experiment')}: {count(self.runs_created, 'run')} created, "
                f"{self.runs_updated} updated, {self.runs_unchanged} already up to date; "
                f"{count(self.epochs_logged, 'epoch')} ({count(self.values_logged, 'metric value')}) logged")


class MlflowFailed(LookupError):
    """MLflow (its tracking server or store) answered an export with an error: one line, named as MLflow's."""


def require_mlflow() -> None:
    """MlflowMissing unless mlflow can be imported (nothing is opened)."""
    try:
        from mlflow.tracking import MlflowClient  # noqa: F401
    except ImportError:
        raise MlflowMissing(INSTALL) from None


def client_for(tracking_uri: str) -> "MlflowClient":
    require_mlflow()
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def lock_path(tracking_uri: str) -> Path:
    """The file whose lock exports into `tracking_uri` take turns on: beside a file or SQLite tracking store,
    else in this machine's temporary folder."""
    parsed = urlparse(tracking_uri)
    if parsed.scheme.startswith("sqlite") and tracking_uri.count("/") >= 3:
        database = tracking_uri.split(":///", 1)[-1]
        if database and database != ":memory:":
            return Path(database).with_name(Path(database).name + ".harness-export.lock")
    if parsed.scheme in ("", "file"):
        folder = Path(parsed.path if parsed.scheme == "file" else tracking_uri)
        return folder / ".harness-export.lock"
    key = hashlib.sha256(tracking_uri.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"harness-export-{key}.lock"


@contextlib.contextmanager
def export_lock(tracking_uri: str) -> Iterator[None]:
    """Held by one export into `tracking_uri` at a time; the kernel lets go of it when its process ends, however
    it ends (a killed export blocks no later one)."""
    path = lock_path(tracking_uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path):
        yield


def export(store: "Store", tracking_uri: str, spec: str | None = None) -> ExportSummary:
    """Copy the runs of `spec` (every spec's, and the runs of none, when None) to the MLflow tracking server
    or store at `tracking_uri`; what MLflow already holds is left as it is. The results store is read first,
    then MLflow is written under `export_lock`; MLflow's errors are MlflowFailed."""
    require_mlflow()
    if spec is not None:
        groups = {spec: store.runs(spec=spec)}
        if not groups[spec] and spec not in {e.name for e in store.experiments()}:
            raise LookupError(f"no spec '{spec}' in the store; specs: "
                              f"{', '.join(e.name for e in store.experiments()) or 'none'}")
    else:
        groups = {e.name: store.runs(spec=e.name) for e in store.experiments()}
        orphans = [r for r in store.runs() if r.spec is None]
        if orphans:
            groups[NO_SPEC] = orphans
    histories: dict[str, dict[str, list[tuple[int, str, float]]]] = {}
    ends: dict[str, dict[str, dict[int, datetime]]] = {}
    for name, records in groups.items():
        history: dict[str, list[tuple[int, str, float]]] = {r.hash: [] for r in records}
        for run_hash, epoch, metric, value in store.metrics([r.hash for r in records]) if records else ():
            history[run_hash].append((epoch, metric, value))
        histories[name] = history
        ends[name] = store.epoch_ends([r.hash for r in records]) if records else {}
    summary = ExportSummary()
    with export_lock(tracking_uri), _named_as_mlflows(tracking_uri):
        client = client_for(tracking_uri)
        for name, records in groups.items():
            if records:
                _export_experiment(client, name, records, histories[name], ends[name], summary)
    return summary


@contextlib.contextmanager
def _named_as_mlflows(tracking_uri: str) -> Iterator[None]:
    """Whatever MLflow raises (its own MlflowException, or its SQL store's SQLAlchemy errors) as MlflowFailed."""
    from harness.words import redact

    try:
        yield
    except MlflowFailed:
        raise
    except Exception as exc:
        lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        raise MlflowFailed(f"MLflow's tracking store at {redact(tracking_uri)} answered with an error: "
                           f"{redact(lines[0] if lines else type(exc).__name__)}") from exc


def _export_experiment(client: "MlflowClient", name: str, records: Sequence["RunRecord"],
                       history: dict[str, list[tuple[int, str, float]]], ends: dict[str, dict[int, datetime]],
                       summary: ExportSummary) -> None:
    found = client.get_experiment_by_name(name)
    experiment_id = found.experiment_id if found is not None else client.create_experiment(
        name, tags={"harness.spec": name})
    summary.experiments.append(name)
    existing = _runs_by_hash(client, experiment_id)
    for record in records:
        _export_run(client, experiment_id, record, existing.get(record.hash), history[record.hash], summary,
                    ends.get(record.hash))


def _runs_by_hash(client: "MlflowClient", experiment_id: str) -> dict[str, "Run"]:
    out: dict[str, Run] = {}
    token = None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token)
        for run in page:
            run_hash = run.data.tags.get(HASH_TAG)
            if run_hash is not None:
                out.setdefault(run_hash, run)
        token = page.token
        if not token:
            return out


def _export_run(client: "MlflowClient", experiment_id: str, record: "RunRecord", run: "Run | None",
                history: list[tuple[int, str, float]], summary: ExportSummary,
                ends: dict[int, datetime] | None = None) -> None:
    from mlflow.entities import Metric, Param, RunTag

    start = _ms(record.started_at or record.created_at)
    created = run is None
    if run is None:
        run = client.create_run(experiment_id, start_time=start, run_name=run_name(record),
                                tags={HASH_TAG: record.hash})
    run_id = run.info.run_id
    have_params, have_tags, have_metrics = run.data.params, run.data.tags, run.data.metrics

    params, long_params = split_params(record.config)
    new_params = [Param(k, v) for k, v in params.items() if k not in have_params]
    if long_params and "harness.long_params" not in have_tags:
        client.log_text(run_id, json.dumps(long_params, indent=1, sort_keys=True), LONG_PARAMS)
    wanted_tags = run_tags(record)
    if long_params:
        wanted_tags["harness.long_params"] = LONG_PARAMS
    new_tags = [RunTag(k, v) for k, v in wanted_tags.items() if have_tags.get(k) != v]
    final = {f"final.{k}": v for k, v in record.final.items()}
    new_final = [Metric(k, v, start, 0) for k, v in final.items() if not _same(have_metrics.get(k), v)]

    done = int(have_tags.get(EPOCH_TAG, -1))
    batches = epoch_batches([h for h in history if h[0] > done], start,
                            ENTITIES_PER_BATCH - PARAMS_PER_BATCH - PARAMS_PER_BATCH - len(new_final), ends)
    # params and tags go with the first batch: a run with nothing new costs no write at all
    for i in range(max(1, math.ceil(len(new_params) / PARAMS_PER_BATCH), math.ceil(len(new_tags) / TAGS_PER_BATCH),
                       len(batches))):
        metrics, last_epoch = batches[i] if i < len(batches) else ([], None)
        chunk_params = new_params[i * PARAMS_PER_BATCH:(i + 1) * PARAMS_PER_BATCH]
        chunk_tags = new_tags[i * TAGS_PER_BATCH:(i + 1) * TAGS_PER_BATCH]
        if last_epoch is not None:
            chunk_tags = chunk_tags + [RunTag(EPOCH_TAG, str(last_epoch))]
            summary.epochs_logged += len({m.step for m in metrics})
        if i == 0:
            metrics = metrics + new_final
        if metrics or chunk_params or chunk_tags:
            client.log_batch(run_id, metrics=metrics, params=chunk_params, tags=chunk_tags)
            summary.values_logged += len(metrics)
    status = MLFLOW_STATUS.get(record.status, "RUNNING")
    end = _ms(record.ended_at) if record.status in FINISHED and record.ended_at is not None else None
    status_changed = run.info.status != status or (end is not None and run.info.end_time != end)
    if status_changed:
        client.update_run(run_id, status=status) if end is None else client.set_terminated(run_id, status, end)
    if created:
        summary.runs_created += 1
    elif new_params or new_tags or new_final or batches or status_changed:
        summary.runs_updated += 1
    else:
        summary.runs_unchanged += 1


def run_name(record: "RunRecord") -> str:
    """variant, seed and hash prefix: `distilled-s0-3fa2c1d0`."""
    return f"{record.variant or 'run'}-s{record.seed if record.seed is not None else '?'}-{short_hash(record.hash)}"


def run_tags(record: "RunRecord") -> dict[str, str]:
    """The tags an exported run carries (values cut to MLflow's tag length)."""
    tags: dict[str, Any] = {HASH_TAG: record.hash, "harness.spec": record.spec, "harness.variant": record.variant,
                            "harness.label": record.label, "harness.profile": record.profile,
                            "harness.seed": record.seed, "harness.state": record.status,
                            "harness.source": record.source or "harness", "harness.device": record.info.get("device"),
                            "harness.error": record.error}
    for key in PROVENANCE_TAGS:
        value = record.provenance.get(key)
        tags[f"harness.provenance.{key}"] = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) \
            else value
    if record.provenance.get("git_commit"):
        tags["mlflow.source.git.commit"] = record.provenance["git_commit"]
    return {k: str(v)[:TAG_LENGTH] for k, v in tags.items() if v is not None}


def split_params(config: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """The flattened config as MLflow params, and the entries MLflow cannot hold as params (too long a key or
    value), which the export keeps whole in an artifact."""
    params: dict[str, str] = {}
    too_long: dict[str, str] = {}
    for key, value in dotted.flatten(config).items():
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        (params if len(key) <= KEY_LENGTH and len(text) <= PARAM_LENGTH else too_long)[key] = text
    return params, too_long


def epoch_batches(history: Iterable[tuple[int, str, float]], start_ms: int, size: int,
                  ends: dict[int, datetime] | None = None) -> list[tuple[list[Any], int]]:
    """Metric values grouped into batches of whole epochs (at most `size` values, unless one epoch has more),
    each with the last epoch it holds. Timestamps are when the epoch ended (`ends`, the store's), else, for epochs
    stored before the store kept that, the run's start plus the epoch in ms: either way the same value exported
    twice (or logged live and exported) is the same MLflow row."""
    from mlflow.entities import Metric

    ends = ends or {}
    by_epoch: dict[int, list[Any]] = {}
    for epoch, name, value in history:
        at = _ms(ends[epoch]) if epoch in ends else start_ms + epoch
        by_epoch.setdefault(epoch, []).append(Metric(name, value, at, epoch))
    batches: list[tuple[list[Any], int]] = []
    for epoch in sorted(by_epoch):
        values = by_epoch[epoch]
        if batches and len(batches[-1][0]) + len(values) <= size:
            batches[-1] = (batches[-1][0] + values, epoch)
        else:
            batches.append((values, epoch))
    return batches


def _same(have: float | None, want: float) -> bool:
    if have is None:
        return False
    return have == want or (math.isnan(have) and math.isnan(want))


def _ms(when: datetime | None) -> int:
    return int(when.timestamp() * 1000) if when is not None else 0
