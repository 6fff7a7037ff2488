"""The run lifecycle's writes: claims, submissions, starts, heartbeats, endings, each one conditional update.

Every write here moves a run only along `harness.states.MOVES_TO`, in SQL (`WHERE status IN (...)`), and
the writes of a launcher or a job also require that their owner token still holds the run (`WHERE owner =
:token`). Each returns whether it took effect, so that the caller learns in one round trip that the run is
no longer its own (cancelled, given up for dead and claimed by another launcher) and stops.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Mapping, TypeVar

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from harness.states import ACTIVE, CLAIMABLE, FINISHED, TAKE_OVER_FROM, Owner, allowed_from
from harness.store.errors import UnknownRun
from harness.store.schema import Run

T = TypeVar("T")
# how long a claim lives without renewal: a launcher renews it while it waits, a job's heartbeat while it runs
LEASE = timedelta(minutes=5)


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


class RunLifecycle:
    """Mixed into `Store`: the writes that move runs between states (`_write` and `display_url` come from it)."""

    _write: Callable[[Callable[[Session], T]], T]
    display_url: str

    def claim(self, run_hash: str, owner: Owner, lease: timedelta = LEASE) -> bool:
        """Take a pending, failed or cancelled run for `owner` (state queued); False when another holds it."""
        now = now_utc()
        return self._move(run_hash, "queued", {
            "owner": owner.token, "owner_host": owner.host, "owner_pid": owner.pid, "owner_started": owner.started,
            "lease_until": now + lease, "job_id": None, "job_started": None, "error": None, "ended_at": None,
        }, extra=[Run.source.is_(None)], now=now)

    def record_submission(self, run_hash: str, token: str, job_id: str, *, job_started: float | None = None,
                          log_path: str | None = None) -> bool:
        """The job that trains the run; queued becomes submitted (a job that already started stays running)."""
        values: dict[str, Any] = {"job_id": job_id, "job_started": job_started,
                                  "status": case((Run.status == "queued", "submitted"), else_=Run.status)}
        if log_path is not None:
            values["log_path"] = log_path
        return self._owned_update(run_hash, token, ACTIVE, values)

    def mark_started(self, run_hash: str, token: str, host: str, provenance: Mapping[str, Any],
                     lease: timedelta = LEASE) -> bool:
        """The job began (or resumed) on `host`; a resumed run keeps its first start time."""
        now = now_utc()
        prov = json.loads(json.dumps(dict(provenance), default=str))
        return self._move(run_hash, "running", {
            "started_at": func.coalesce(Run.started_at, now), "heartbeat_at": now, "lease_until": now + lease,
            "host": host, "ended_at": None, "error": None, "provenance": prov, "git_commit": prov.get("git_commit"),
        }, token=token, now=now)

    def heartbeat(self, run_hash: str, token: str, epoch: int | None = None, lease: timedelta = LEASE) -> bool:
        """The job is alive (at `epoch`); False when the run is no longer its own: the job should stop."""
        now = now_utc()
        values: dict[str, Any] = {"heartbeat_at": now, "lease_until": now + lease}
        if epoch is not None:
            values["epoch"] = int(epoch)
        return self._owned_update(run_hash, token, ("running",), values)

    def renew_leases(self, token: str, lease: timedelta = LEASE) -> int:
        """Extend every active claim of `token` (a launcher waiting on its runs); returns how many."""
        until = now_utc() + lease

        def work(session: Session) -> int:
            result = session.execute(update(Run).where(Run.owner == token, Run.status.in_(ACTIVE))
                                     .values(lease_until=until))
            return int(result.rowcount or 0)

        return self._write(work)

    def finish(self, run_hash: str, token: str, status: str, error: str | None = None) -> bool:
        """The job's own ending: completed, failed or cancelled, while it still owns the run."""
        if status not in FINISHED:
            raise ValueError(f"'{status}' is not an ending; endings: {', '.join(FINISHED)}")
        return self._move(run_hash, status, {"error": error}, token=token)

    def requeue(self, run_hash: str, token: str) -> bool:
        return self._move(run_hash, "requeued", {}, token=token)

    def release(self, run_hash: str, token: str) -> bool:
        """Give back a claimed run that was never submitted (an interrupted launch): pending again."""
        return self._move(run_hash, "pending", {"owner": None, "lease_until": None}, token=token)

    def give_up(self, run_hash: str, observed_owner: str | None, error: str, status: str = "failed") -> bool:
        """End an active run whose owner is gone (failed, or cancelled when SLURM says so), unless it changed
        hands since its owner was observed."""
        if status not in ("failed", "cancelled"):
            raise ValueError(f"a run given up is failed or cancelled, not '{status}'")
        owner_matches = Run.owner.is_(None) if observed_owner is None else Run.owner == observed_owner
        return self._move(run_hash, status, {"error": error}, extra=[owner_matches])

    def take_over(self, run_hash: str, observed_owner: str | None, cause: str, owner: Owner,
                  lease: timedelta = LEASE) -> bool:
        """End the claim of an owner judged dead and claim the run for `owner`, in one conditional update: the
        run goes from its active state straight to queued, so no reader ever sees it failed in between (and
        fails what waits on it). `cause` (why the last attempt ended) stays as its error until the new job
        starts. False when the run changed hands or ended since `observed_owner` was seen."""
        now = now_utc()
        owner_matches = Run.owner.is_(None) if observed_owner is None else Run.owner == observed_owner
        return self._conditional(run_hash, [Run.status.in_(TAKE_OVER_FROM), owner_matches, Run.source.is_(None)], {
            "status": "queued", "updated_at": now, "error": cause, "ended_at": None, "job_id": None,
            "job_started": None, "owner": owner.token, "owner_host": owner.host, "owner_pid": owner.pid,
            "owner_started": owner.started, "lease_until": now + lease,
        })

    def cancel(self, run_hash: str, reason: str = "cancelled by the user") -> bool:
        """Cancel an unfinished run, whoever owns it: its job notices at its next heartbeat and stops."""
        return self._move(run_hash, "cancelled", {"error": reason})

    def set_status(self, run_hash: str, status: str, *, error: str | None = None, job_id: str | None = None,
                   log_path: str | None = None) -> bool:
        """Move a run to `status` along an allowed transition, whoever owns it; False when it may not move."""
        values: dict[str, Any] = {}
        for key, value in (("error", error), ("job_id", job_id), ("log_path", log_path)):
            if value is not None:
                values[key] = value
        return self._move(run_hash, status, values)

    # -- the one conditional update ---------------------------------------------------------

    def _move(self, run_hash: str, status: str, values: dict[str, Any], *, token: str | None = None,
              extra: list[Any] | None = None, now: datetime | None = None) -> bool:
        now = now or now_utc()
        values = {**values, "status": status, "updated_at": now}
        if status in FINISHED:
            values["ended_at"] = now
        conditions = [Run.status.in_(allowed_from(status)), *(extra or [])]
        if token is not None:
            conditions.append(Run.owner == token)
        return self._conditional(run_hash, conditions, values)

    def _owned_update(self, run_hash: str, token: str, statuses: tuple[str, ...], values: dict[str, Any]) -> bool:
        return self._conditional(run_hash, [Run.owner == token, Run.status.in_(statuses)],
                                 {**values, "updated_at": now_utc()})

    def _conditional(self, run_hash: str, conditions: list[Any], values: dict[str, Any]) -> bool:
        def work(session: Session) -> bool:
            result = session.execute(update(Run).where(Run.hash == run_hash, *conditions).values(**values))
            if result.rowcount:
                return True
            if session.scalar(select(Run.id).where(Run.hash == run_hash)) is None:
                raise UnknownRun(f"no run {run_hash} in the store at {self.display_url}")
            return False

        return self._write(work)


__all__ = ["CLAIMABLE", "LEASE", "RunLifecycle", "now_utc"]
