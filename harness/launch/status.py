"""One row per run for `harness status` and the launcher's progress lines: state, epoch, top-1, time."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone

from harness.launch.estimate import remaining_s
from harness.launch.liveness import judge
from harness.launch.protocols import RunStore
from harness.store.records import RunRecord


@dataclass(frozen=True)
class RunStatus:
    hash: str
    spec: str | None
    description: str
    status: str
    epoch: int | None
    epochs: int | None
    top1: float | None
    job_id: str | None
    elapsed_s: float | None
    error: str | None
    # where an active run's owner is (a launcher's host, a job's node)
    host: str | None = None
    # seconds a running run still needs, from its own measured epoch time (harness.launch.estimate.remaining)
    remaining_s: float | None = None
    # the share of its latest epoch's training time the run waited for data (None: not recorded)
    data_wait_frac: float | None = None
    # GPUs the run holds (0: it trains on CPU), and the GPU-hours it has spent: elapsed time × GPUs
    gpus: int = 0

    @property
    def gpu_h(self) -> float | None:
        return self.elapsed_s * self.gpus / 3600 if self.elapsed_s is not None and self.gpus else None


def statuses(store: RunStore, spec: str | None = None, now: datetime | None = None,
             judged: bool = False) -> list[RunStatus]:
    """With `judged`, an active run whose owner `harness.launch.liveness` finds dead says so in its `error`; its
    state is left as stored (a read changes nothing: only a launch gives a run up)."""
    now = now or datetime.now(timezone.utc)
    records = [r for r in store.runs(spec=spec) if r.source is None]
    dead = {h: f"{v.why}: the next launch gives it up" for h, v in (judge(records, now) if judged else {}).items()
            if not v.alive}
    # one read of the curves of every run still training, not two per run and refresh
    training = [r.hash for r in records if "top1" not in r.final and r.epoch is not None]
    curves: dict[str, list[tuple[int, str, float]]] = defaultdict(list)
    for run_hash, epoch, name, value in store.metrics(training, names=CURVES) if training else []:
        curves[run_hash].append((epoch, name, value))
    return [RunStatus(
        hash=r.hash, spec=r.spec, description=describe(r), status=r.status, epoch=r.epoch,
        epochs=(r.config.get("schedule") or {}).get("epochs"), top1=_top1(r, curves[r.hash]), job_id=r.job_id,
        elapsed_s=elapsed_s(r, now), error=dead.get(r.hash, r.error), host=r.host or r.owner_host,
        remaining_s=remaining_s(r, [v for _, name, v in curves[r.hash] if name == "train_img_s"], now),
        data_wait_frac=_latest(r, curves[r.hash], "data_wait_frac"), gpus=gpus_held(r),
    ) for r in records]


def gpus_held(record: RunRecord) -> int:
    """The GPUs a run trains on: its processes where it recorded a GPU device (one each), else its config's
    `gpus` unless it asks for the CPU; 0 for a run that trained or will train on CPU."""
    info, config = record.info or {}, record.config or {}
    device = str(info.get("device", ""))
    if device.startswith("cpu") or config.get("device") == "cpu":
        return 0
    if device and str(info.get("world_size", "")).isdigit():
        return int(info["world_size"])
    return int(config.get("gpus", 1))


# the per-epoch metrics a status row reads: the latest top-1, the speed that gives the time left, the data wait
CURVES = ("top1", "train_img_s", "data_wait_frac")


def latest_top1(store: RunStore, record: RunRecord) -> float | None:
    """The run's final top-1, or the top-1 of its latest epoch while it trains."""
    if "top1" in record.final or record.epoch is None:
        return _top1(record, [])
    return _top1(record, [(e, "top1", v) for _, e, _, v in store.metrics([record.hash], names=["top1"])])


def _top1(record: RunRecord, curve: list[tuple[int, str, float]]) -> float | None:
    return _latest(record, curve, "top1")


def _latest(record: RunRecord, curve: list[tuple[int, str, float]], metric: str) -> float | None:
    """A metric of the finished run (its last epoch's), else of the epoch it last recorded."""
    if "top1" in record.final:
        return record.final.get(metric)
    return next((v for epoch, name, v in curve if name == metric and epoch == record.epoch), None)


def elapsed_s(record: RunRecord, now: datetime | None = None) -> float | None:
    """Seconds since the run first started: to its end, or to now while it runs."""
    if record.started_at is None:
        return None
    end = record.ended_at or now or datetime.now(timezone.utc)
    return (end - record.started_at).total_seconds()


def describe(record: RunRecord) -> str:
    coords = " ".join(f"{k}={v}" for k, v in (record.coords or {}).items())
    return f"{record.variant} seed={record.seed}" + (f" {coords}" if coords else "") + (
        f" [{record.profile}]" if record.profile else "")
