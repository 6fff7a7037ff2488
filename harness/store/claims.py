"""The run lifecycle's writes: claims, submissions, starts, heartbeats, endings, each one conditional update.

Every write here moves a run only along `harness.states.MOVES_TO`, in SQL (`WHERE status IN (...)`), and
the writes of a launcher or a job also require that their owner token still holds the run (`WHERE owner =
:token`). Each returns whether it took effect, so that the caller learns in one round trip that the run is
no longer its own (cancelled, given up for dead and claimed by another launcher) and stops. A job's results
(`Store.log_epoch`, `log_final`, `log_predictions`) are fenced the same way: `_hold` proves the claim in the
transaction that writes them, or raises `NotOwner`.

A move tried again after a lost connection may find that its first try took effect: a move by a token to
the state the run is already in under that token counts as done.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Mapping, TypeVar, cast

from sqlalchemy import CursorResult, case, func, select, update
from sqlalchemy.orm import Session

from harness.states import (
    ACTIVE, CLAIMABLE, FINISHED, TAKE_OVER_FROM, UNTRAINED_ENDINGS, Owner, RunState, allowed_from,
    lease as current_lease,
)
from harness.store.errors import NotOwner, UnknownRun
from harness.store.schema import Run

T = TypeVar("T")


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


class RunLifecycle:
    """Mixed into `Store`: the writes that move runs between states (`_write` and `display_url` come from it)."""

    _write: Callable[[Callable[[Session], T]], T]
    _read: Callable[[Callable[[Session], T]], T]

    @property
    def display_url(self) -> str:
        raise NotImplementedError

    def claim(self, run_hash: str, owner: Owner, lease: timedelta | None = None) -> bool:
        """Take a pending, failed or cancelled run for `owner` (state queued); False when another holds it.
        `lease`: how long the claim lives unrenewed (None: `harness.states.lease()`)."""
        now = now_utc()
        return self._move(run_hash, RunState.QUEUED, {
            **_owner_columns(owner), "lease_until": now + (lease or current_lease()), "job_id": None, "job_started": None, "error": None,
            "ended_at": None,
        }, extra=[Run.source.is_(None)], now=now, done_by=owner.token)

    def record_submission(self, run_hash: str, token: str, job_id: str, *, job_started: float | None = None,
                          log_path: str | None = None) -> bool:
        """The job that trains the run; queued becomes submitted (a job that already started stays running)."""
        submitted = case((Run.status == RunState.QUEUED.value, RunState.SUBMITTED.value), else_=Run.status)
        values: dict[str, Any] = {"job_id": job_id, "job_started": job_started, "status": submitted}
        if log_path is not None:
            values["log_path"] = log_path
        return self._owned_update(run_hash, token, ACTIVE, values)

    def mark_started(self, run_hash: str, token: str, host: str, provenance: Mapping[str, Any],
                     lease: timedelta | None = None) -> bool:
        """The job began (or resumed) on `host`; a resumed run keeps its first start time."""
        now = now_utc()
        prov = json.loads(json.dumps(dict(provenance), default=str))
        return self._move(run_hash, RunState.RUNNING, {
            "started_at": func.coalesce(Run.started_at, now), "heartbeat_at": now,
            "lease_until": now + (lease or current_lease()),
            "host": host, "ended_at": None, "error": None, "provenance": prov, "git_commit": prov.get("git_commit"),
        }, token=token, now=now)

    def heartbeat(self, run_hash: str, token: str, epoch: int | None = None, lease: timedelta | None = None) -> bool:
        """The job is alive (at `epoch`); False when the run is no longer its own: the job should stop."""
        now = now_utc()
        values: dict[str, Any] = {"heartbeat_at": now, "lease_until": now + (lease or current_lease())}
        if epoch is not None:
            values["epoch"] = int(epoch)
        return self._owned_update(run_hash, token, (RunState.RUNNING,), values)

    def renew_leases(self, token: str, lease: timedelta | None = None) -> int:
        """Extend every active claim of `token` (a launcher waiting on its runs); returns how many."""
        until = now_utc() + (lease or current_lease())

        def work(session: Session) -> int:
            return _updated(session, update(Run).where(Run.owner == token, Run.status.in_(ACTIVE))
                            .values(lease_until=until))

        return self._write(work)

    def finish(self, run_hash: str, token: str, status: str, error: str | None = None) -> bool:
        """The job's own ending: completed, failed or cancelled, while it still owns the run."""
        if status not in FINISHED:
            raise ValueError(f"'{status}' is not an ending; endings: {', '.join(FINISHED)}")
        return self._move(run_hash, status, {"error": error}, token=token)

    def holds(self, run_hash: str, token: str) -> bool:
        """Whether the claim of `token` is still the run's latest (in any state: a cancelled or given-up run keeps
        its owner until another launch claims it)."""
        def work(session: Session) -> bool:
            owner = session.execute(select(Run.owner).where(Run.hash == run_hash)).first()
            if owner is None:
                raise UnknownRun(f"no run {run_hash} in the store at {self.display_url}")
            return bool(owner[0] == token)

        return self._read(work)

    def requeue(self, run_hash: str, token: str) -> bool:
        return self._move(run_hash, RunState.REQUEUED, {}, token=token)

    def release(self, run_hash: str, token: str) -> bool:
        """Give back a claimed run that was never submitted (an interrupted launch): pending again."""
        return self._move(run_hash, RunState.PENDING, {"owner": None, "lease_until": None}, token=token)

    def give_up(self, run_hash: str, observed_owner: str | None, error: str, status: str = RunState.FAILED) -> bool:
        """End an active run whose owner is gone (failed, or cancelled when SLURM says so), unless it changed
        hands since its owner was observed."""
        if status not in UNTRAINED_ENDINGS:
            raise ValueError(f"a run given up is failed or cancelled, not '{status}'")
        owner_matches = Run.owner.is_(None) if observed_owner is None else Run.owner == observed_owner
        return self._move(run_hash, status, {"error": error}, extra=[owner_matches])

    def take_over(self, run_hash: str, observed_owner: str | None, cause: str, owner: Owner,
                  lease: timedelta | None = None) -> bool:
        """End the claim of an owner judged dead and claim the run for `owner`, in one conditional update: the
        run goes from its active state straight to queued, so no reader ever sees it failed in between (and
        fails what waits on it). `cause` (why the last attempt ended) stays as its error until the new job
        starts. False when the run changed hands or ended since `observed_owner` was seen."""
        now = now_utc()
        owner_matches = Run.owner.is_(None) if observed_owner is None else Run.owner == observed_owner
        return self._conditional(run_hash, [Run.status.in_(TAKE_OVER_FROM), owner_matches, Run.source.is_(None)], {
            "status": RunState.QUEUED.value, "updated_at": now, "error": cause, "ended_at": None, "job_id": None,
            "job_started": None, **_owner_columns(owner), "lease_until": now + (lease or current_lease()),
        })

    def cancel(self, run_hash: str, reason: str = "cancelled by the user") -> bool:
        """Cancel an unfinished run, whoever owns it: its job notices at its next heartbeat and stops."""
        return self._move(run_hash, RunState.CANCELLED, {"error": reason})

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
              extra: list[Any] | None = None, now: datetime | None = None, done_by: str | None = None) -> bool:
        now = now or now_utc()
        conditions = [Run.status.in_(allowed_from(status)), *(extra or [])]
        # the plain string goes to the database, whether the caller named a RunState member or its value
        status = RunState(status).value
        values = {**values, "status": status, "updated_at": now}
        if status in FINISHED:
            values["ended_at"] = now
        if token is not None:
            conditions.append(Run.owner == token)
        done_by = done_by or token
        return self._conditional(run_hash, conditions, values, done=(status, done_by) if done_by else None)

    def _owned_update(self, run_hash: str, token: str, statuses: tuple[str, ...], values: dict[str, Any]) -> bool:
        return self._conditional(run_hash, [Run.owner == token, Run.status.in_(statuses)],
                                 {**values, "updated_at": now_utc()})

    def _conditional(self, run_hash: str, conditions: list[Any], values: dict[str, Any],
                     done: tuple[str, str] | None = None) -> bool:
        """One conditional update; when it matches nothing, True still if the run already is in state
        `done[0]` under token `done[1]` (this very move, whose commit a lost connection hid)."""
        def work(session: Session) -> bool:
            if _updated(session, update(Run).where(Run.hash == run_hash, *conditions).values(**values)):
                return True
            found = session.execute(select(Run.status, Run.owner).where(Run.hash == run_hash)).first()
            if found is None:
                raise UnknownRun(f"no run {run_hash} in the store at {self.display_url}")
            return done is not None and (found.status, found.owner) == done

        return self._write(work)

    def _hold(self, session: Session, run_hash: str, token: str) -> None:
        """Prove, inside the caller's write transaction, that `token` holds the run, running; else `NotOwner`.

        An update, not a read: on PostgreSQL it locks the run's row until the transaction ends, so no claim by
        another launch can slip in between this check and the write it guards (SQLite's write lock, taken at
        BEGIN IMMEDIATE, does the same for the whole file)."""
        if _updated(session, update(Run).where(Run.hash == run_hash, Run.owner == token,
                                               Run.status == RunState.RUNNING.value).values(updated_at=now_utc())):
            return
        found = session.execute(select(Run.status, Run.owner).where(Run.hash == run_hash)).first()
        if found is None:
            raise UnknownRun(f"no run {run_hash} in the store at {self.display_url}")
        whose = " under another launch's claim" if found.owner != token else ""
        raise NotOwner(f"run {run_hash[:10]} is no longer this job's to write: it is {found.status}{whose}",
                       status=found.status, owner=found.owner)


def _owner_columns(owner: Owner) -> dict[str, Any]:
    return {"owner": owner.token, "owner_host": owner.host, "owner_pid": owner.pid, "owner_started": owner.started,
            "owner_boot": owner.boot, "owner_pidns": owner.pidns}


def _updated(session: Session, statement: Any) -> int:
    """How many rows an UPDATE matched (an UPDATE's result is a cursor result, which counts them)."""
    return int(cast(CursorResult[Any], session.execute(statement)).rowcount or 0)


__all__ = ["CLAIMABLE", "RunLifecycle", "now_utc"]
