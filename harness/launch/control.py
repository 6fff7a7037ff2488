"""Watching and steering runs after submission: status, logs, cancel, retry.

Everything here reads and writes run state through the store, so it works the same from
another shell, another node or a later day than the `harness run` that submitted the jobs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.launch.plan import ACTIVE, STALE_AFTER, as_utc

FINISHED = ("completed", "failed", "cancelled")


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
    # seconds a running run still needs, from its own measured epoch time (harness.launch.estimate.remaining)
    remaining_s: float | None = None


def reap_dead(store: Any, now: datetime | None = None) -> list[str]:
    """Mark failed the active runs whose job fell silent (kill -9, a lost node); returns their hashes."""
    from harness.launch.slurm import live_jobs, reconcile

    now = now or datetime.now(timezone.utc)
    records = store.runs()
    dead = list(reconcile(store, records))
    # a job waiting in the SLURM queue (first submission or requeue) is alive without a heartbeat
    live = live_jobs(records)
    for record in records:
        if record.status not in ACTIVE or record.source is not None or record.hash in live or record.hash in dead:
            continue
        last = record.heartbeat_at or record.started_at or record.created_at
        if last is None:
            continue
        last = as_utc(last)
        # a queued SLURM job has no heartbeat yet: only a started run can fall silent
        if record.status == "submitted" and record.started_at is None:
            continue
        if now - last > STALE_AFTER:
            store.set_status(record.hash, "failed", error=f"no heartbeat since {last:%Y-%m-%d %H:%M:%S} UTC: "
                                                           "the job died without a word")
            dead.append(record.hash)
    return dead


def statuses(store: Any, spec: str | None = None, now: datetime | None = None) -> list[RunStatus]:
    from harness.launch.estimate import remaining

    now = now or datetime.now(timezone.utc)
    out = []
    for record in store.runs(spec=spec):
        if record.source is not None:
            continue
        epochs = (record.config.get("schedule") or {}).get("epochs")
        top1 = latest_top1(store, record)
        out.append(RunStatus(
            hash=record.hash, spec=record.spec, description=_describe(record), status=record.status,
            epoch=record.epoch, epochs=epochs, top1=top1, job_id=record.job_id,
            elapsed_s=elapsed_s(record, now), error=record.error, remaining_s=remaining(store, record),
        ))
    return out


def format_statuses(rows: list[RunStatus]) -> str:
    header = f"{'run':<10}  {'status':<10}  {'epoch':>7}  {'top-1':>6}  {'job':<14}  {'elapsed':>8}  {'left':>8}  what"
    lines = [header]
    for r in rows:
        epoch = f"{r.epoch + 1}/{r.epochs}" if r.epoch is not None else "-"
        top1 = f"{r.top1:.1f}" if r.top1 is not None else "-"
        elapsed = _clock(r.elapsed_s) if r.elapsed_s is not None else "-"
        left = _clock(r.remaining_s) if r.remaining_s is not None else "-"
        lines.append(f"{r.hash[:10]}  {r.status:<10}  {epoch:>7}  {top1:>6}  {(r.job_id or '-'):<14}  "
                     f"{elapsed:>8}  {left:>8}  {r.spec or ''}: {r.description}")
    return "\n".join(lines)


def find_runs(store: Any, selector: str) -> list[Any]:
    """Runs named by a spec name or a hash prefix (at least 4 characters)."""
    runs = store.runs()
    by_spec = [r for r in runs if r.spec == selector]
    if by_spec:
        return by_spec
    if len(selector) >= 4:
        matches = [r for r in runs if r.hash.startswith(selector)]
        if matches:
            return matches
    raise LookupError(f"no spec or run matches '{selector}'")


def log_text(store: Any, selector: str) -> str:
    runs = find_runs(store, selector)
    if len(runs) != 1:
        raise LookupError(f"'{selector}' matches {len(runs)} runs; give a longer hash prefix")
    record = runs[0]
    if not record.log_path:
        raise LookupError(f"run {record.hash[:10]} has no log yet (status: {record.status})")
    parts = []
    err = Path(record.log_path)
    for path in (err.with_suffix(".out"), err):
        if path.exists():
            parts.append(f"==> {path} <==\n{path.read_text(errors='replace')}")
    if not parts:
        raise LookupError(f"the log of run {record.hash[:10]} is not at {record.log_path}")
    return "\n".join(parts)


def cancel(store: Any, selector: str) -> list[str]:
    """Cancel the unfinished runs of a spec (or one run); returns the hashes cancelled."""
    cancelled = []
    for record in find_runs(store, selector):
        if record.status in FINISHED:
            continue
        if record.job_id:
            kill_job(record.job_id)
        store.set_status(record.hash, "cancelled", error="cancelled by the user")
        cancelled.append(record.hash)
    return cancelled


def job_id(executor: str, raw: str) -> str:
    """How a job id is stored: the executor's name, a colon, its own id (the pid of a local job)."""
    return f"{executor}:{raw}"


def kill_job(stored: str) -> None:
    """Stop a job by its stored id (`slurm:ID` or `local:PID`)."""
    executor, _, raw = stored.partition(":")
    if executor == "slurm":
        subprocess.run(["scancel", raw], check=False, capture_output=True)
    elif executor == "local" and raw.isdigit():
        _kill_local(int(raw))


def _kill_local(controller: int, grace_s: float = 5.0) -> None:
    """End a local job: its submitit controller (the stored pid) and the task processes it started.

    SIGINT first, so a run can say it was interrupted; but a job started from a non-interactive shell
    ignores SIGINT, and submitit's tasks ignore SIGTERM, so whatever is left after the grace period is killed.
    """
    pids = _descendants(controller) + [controller]
    for pid in pids:
        _signal(pid, signal.SIGINT)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.1)
    for pid in pids:
        if _alive(pid):
            _signal(pid, signal.SIGKILL)


def _descendants(pid: int) -> list[int]:
    """Child processes of `pid`, grandchildren included, read from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name may hold spaces and parentheses: fields resume after the last ')'
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def latest_top1(store: Any, record: Any) -> float | None:
    """The run's final top-1, or the top-1 of its latest epoch while it trains."""
    if "top1" in record.final:
        return record.final["top1"]
    if record.epoch is None:
        return None
    for _, epoch, _, value in store.metrics([record.hash], names=["top1"]):
        if epoch == record.epoch:
            return value
    return None


def _describe(record: Any) -> str:
    coords = " ".join(f"{k}={v}" for k, v in (record.coords or {}).items())
    return f"{record.variant} seed={record.seed}" + (f" {coords}" if coords else "") + (
        f" [{record.profile}]" if record.profile else "")


def elapsed_s(record: Any, now: datetime | None = None) -> float | None:
    """Seconds the run has trained: from its start to its end, or to now while it runs."""
    if record.started_at is None:
        return None
    end = record.ended_at or now or datetime.now(timezone.utc)
    return (as_utc(end) - as_utc(record.started_at)).total_seconds()


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def failed_runs(store: Any, spec: str | None = None) -> list[Any]:
    """Planned runs rebuilt from the store for every failed or cancelled run (of one spec)."""
    from harness.config import RunConfig
    from harness.spec import PlannedRun
    from harness.spec.expand import HASH_RE, REFERENCE_KEYS
    from harness.spec.overrides import get_dotted

    runs = []
    for record in store.runs(spec=spec):
        if record.status not in ("failed", "cancelled") or record.source is not None:
            continue
        deps = tuple(ref for key in REFERENCE_KEYS
                     if (ref := get_dotted(record.config, key)) and HASH_RE.match(str(ref)))
        runs.append(PlannedRun(
            hash=record.hash, config=RunConfig.model_validate(record.config), spec=record.spec or "",
            profile=record.profile, variant=record.variant or "", label=record.label or "",
            coords=dict(record.coords or {}), seed=record.seed or 0, depends_on=deps,
        ))
    return runs
