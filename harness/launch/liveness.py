"""Is an active run alive? The one rule that planning, `harness status`, reaping and waiting all use.

A run in an active state (harness/states.py) is alive while whoever owns it is, judged by the most direct
evidence there is, in this order:

1. its SLURM job, when SLURM can be asked: alive while the job is pending, running or requeued (where SLURM
   cannot be asked, a job still waiting in the queue is presumed alive: it has no heartbeat yet);
2. its local job's process, when the run was launched from this machine (same host name, boot id and PID
   namespace: `harness.launch.processes.Machine`): alive while that process (same pid *and* same start time)
   runs, so a crash is seen at once, not minutes later;
3. its launcher's process, on this machine, while nothing is submitted yet;
4. otherwise (another machine, boot or PID namespace, SLURM out of reach: a process this machine cannot see is
   unknown, never dead) its lease: renewed by the launcher while it waits and by
   the job's heartbeat while it trains, it lapses `harness.states.lease()` (HARNESS_LEASE_S) after the last
   renewal.

`reap` gives up the runs that are not alive, storing the cause it can find (the job's last exception, how
SLURM ended it, which process is gone); each give-up is conditional on the owner it judged, so a run that
changed hands meanwhile is left alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable

from harness.launch import logs, processes, queue
from harness.launch.protocols import RunStore
from harness.states import ACTIVE, Owner, RunState, lease as current_lease


@dataclass(frozen=True)
class Verdict:
    alive: bool
    # the evidence, as a user reads it ("SLURM job 77 is PENDING", "process 4711 on node3 is gone")
    why: str
    # the state a dead run ends in (SLURM may say it was cancelled)
    end: str = RunState.FAILED


def judge(records: Iterable, now: datetime | None = None) -> dict[str, Verdict]:
    """A verdict for each active run among `records` (hash -> Verdict); SLURM is asked once for all."""
    now = now or datetime.now(timezone.utc)
    active = [r for r in records if r.status in ACTIVE and r.source is None]
    states = queue.job_states(j for r in active if (j := queue.slurm_job_id(r.job_id)))
    return {r.hash: _verdict(r, now, states) for r in active}


def _verdict(record, now: datetime, slurm_states: dict[str, str]) -> Verdict:
    job = queue.slurm_job_id(record.job_id)
    if job is not None and job in slurm_states:
        state = slurm_states[job]
        status = queue.store_status(state)
        if status in ACTIVE:
            return Verdict(True, f"SLURM job {job} is {state}")
        end = RunState.CANCELLED if status == RunState.CANCELLED else RunState.FAILED
        return Verdict(False, f"SLURM job {job} ended {state}" if state != queue.UNLISTED
                       else f"SLURM no longer knows job {job}", end)
    if job is not None and record.status in (RunState.SUBMITTED, RunState.REQUEUED):
        # SLURM cannot be asked from here (a laptop sharing the store): a job may wait in its queue for days
        # without a heartbeat, so only a job that started and then fell silent counts as dead
        return Verdict(True, f"SLURM job {job} waits in the queue, as far as can be told here (no squeue)")
    here = processes.this_machine()
    # a process is looked up by its pid only on the machine, boot and PID namespace it was recorded in; from
    # anywhere else it is unknown (never dead) and judged by its lease
    seen = here.sees(record.owner_host, record.owner_boot, record.owner_pidns)
    pid = queue.local_pid(record.job_id)
    if pid is not None and seen and record.job_started is not None:
        ref = processes.ProcessRef(here.host, pid, record.job_started, here.boot, here.pidns)
        if processes.alive(ref):
            return Verdict(True, f"its job (process {pid}) runs on this machine")
        return Verdict(False, f"its job's process {pid} on {here.host} is gone")
    if record.job_id is None and seen and record.owner_pid is not None:
        ref = processes.ProcessRef(here.host, record.owner_pid, record.owner_started or 0.0, here.boot, here.pidns)
        if processes.alive(ref):
            return Verdict(True, f"queued by a launcher (process {record.owner_pid}) on this machine")
        return Verdict(False, f"the launcher that queued it (process {record.owner_pid} on {here.host}) is gone")
    return _lease_verdict(record, now)


def _lease_verdict(record, now: datetime) -> Verdict:
    lease = record.lease_until
    if lease is None:  # a run claimed before leases existed (revision 3): its heartbeat is the lease
        last = record.heartbeat_at or record.started_at or record.created_at
        lease = last + current_lease() if last is not None else None
    where = f" on {record.owner_host}" if record.owner_host else ""
    if lease is not None and now < lease:
        return Verdict(True, f"its owner{where} renewed its claim until {lease:%H:%M:%S} UTC")
    since = f" since {lease - current_lease():%Y-%m-%d %H:%M:%S} UTC" if lease is not None else ""
    return Verdict(False, f"no word from its job or launcher{where}{since}")


def reap(store: RunStore, records: Iterable | None = None, now: datetime | None = None) -> dict[str, str]:
    """Give up every active run that is not alive; returns hash -> the cause stored with it."""
    records = list(store.runs() if records is None else records)
    verdicts = judge(records, now)
    ended = {}
    for record in records:
        verdict = verdicts.get(record.hash)
        if verdict is None or verdict.alive:
            continue
        cause = cause_of_death(record, verdict)
        if store.give_up(record.hash, record.owner, cause, status=verdict.end):
            ended[record.hash] = cause
    return ended


def take(store: RunStore, run_hash: str, record, verdict: Verdict | None, owner: Owner) -> tuple[bool, str | None]:
    """Claim a run for `owner`: one whose owner is judged dead is taken over from it in one move (so no reader
    sees it failed in between), any other claimable run is claimed. Returns whether `owner` now holds it, and
    the cause of the last attempt's end where a dead owner's run was taken."""
    if record is not None and record.status in ACTIVE:
        if verdict is None or verdict.alive:
            return False, None
        cause = cause_of_death(record, verdict)
        return store.take_over(run_hash, record.owner, cause, owner), cause
    return store.claim(run_hash, owner), None


def cause_of_death(record, verdict: Verdict) -> str:
    """What ended a run that fell silent: the last exception in its log when there is one, with the evidence."""
    exception = logs.last_exception(record.log_path)
    if exception:
        return f"{exception} ({verdict.why})"
    return f"{verdict.why}: the job ended without reporting (killed, out of memory, or a lost node)"
