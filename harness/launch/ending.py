"""How a job ended, told by its cause rather than by submitit's bookkeeping lines."""

from __future__ import annotations

import sys
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from harness.launch import logs
from harness.launch.protocols import RunStore
from harness.store import StoreError
from harness.states import RunState, UNTRAINED_ENDINGS
from harness.store.records import RunRecord
from harness.words import first_line

KILLED = "the job's process ended without a result: it was killed (kill -9, the out-of-memory killer, a lost node)"
# what a launch reports of a run it had claimed and another launch took over (its claim having lapsed)
TAKEN_OVER = "taken over by another launch"


def taken_over(record: RunRecord | None, token: str) -> bool:
    """Whether another launch holds the run now: its owner token is no longer `token`. (A cancellation or a
    give-up keeps the owner; only a new claim changes it.) Neither completed nor failed for this launch."""
    return record is not None and record.owner is not None and record.owner != token


def job_error(job: Any) -> str | None:
    """None when the job returned (every task of it); otherwise the exception it raised, one line, or how it
    died."""
    try:
        # results(), not result(): a job of several tasks (a run of several GPUs or processes) has one per task
        job.results()
    except Exception as exc:  # submitit re-raises the job's exception, wrapped in its own text
        text = str(exc)
        found = logs.last_exception_in(text)
        if found:
            return found
        if type(exc).__name__ == "UncompletedJobError":
            return KILLED
        return logs.named(first_line(exc, limit=500))
    return None


def record_failure(store: RunStore, run_hash: str, token: str, record: RunRecord | None, error: str | None,
                   log_path: str | None) -> str:
    """The cause of a job that did not complete, stored as the run's error unless the job stored its own."""
    if record is not None and record.status in UNTRAINED_ENDINGS and record.error:
        return record.error  # the job said why itself
    cause = logs.last_exception(log_path) or error or (
        f"the job ended with the run still '{record.status if record else 'unknown'}'")
    try:
        store.finish(run_hash, token, RunState.FAILED, error=cause)
    except (StoreError, SQLAlchemyError, OSError) as exc:
        # a full disk or a lost server must not end the launch: the next `harness run` finds the run dead
        print(f"harness: could not record that run {run_hash[:10]} failed ({first_line(exc)}); "
              f"it failed because: {cause}", file=sys.stderr, flush=True)
    return cause
