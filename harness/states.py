"""A run's states and the moves between them: the one definition the store enforces and everything else reads.

    pending ──claim──▶ queued ──submit──▶ submitted ──start──▶ running ──▶ completed
       │                 │ ▲                  │                 │  ▲
       │                 │ └──release─────────┘(never started)  │  └── requeued (time limit, preemption)
       ▼                 ▼                                      ▼
    cancelled ◀──────── any active state ──────────────────▶ failed
       │                                                        │
       └───────────── claim (a new launch or `harness retry`) ──┘

    any active state ──take over (its owner is dead)──▶ queued under a new owner

A launcher *claims* a run before it submits anything: one conditional update moves it to `queued` under the
launcher's owner token, so two launchers never both train it. Every later write by that launcher or by the
run's job names the same token, and a write whose token no longer owns the run changes nothing: a job whose
run was cancelled, or given up for dead and claimed again, learns it at its next heartbeat and stops.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum


class RunState(str, Enum):
    # registered by a spec, not claimed by any launcher
    PENDING = "pending"
    # claimed by a launcher: waiting for its dependencies or a free slot, nothing submitted yet
    QUEUED = "queued"
    # handed to an executor (a local process, a SLURM job); the job has not started training
    SUBMITTED = "submitted"
    # the job is training and beating its heartbeat
    RUNNING = "running"
    # the job hit a time limit or was preempted; SLURM holds it until it starts again
    REQUEUED = "requeued"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


STATUSES: tuple[str, ...] = tuple(s.value for s in RunState)
# owned by a launcher or a job: alive as long as `harness.launch.liveness` says its owner is
ACTIVE: tuple[str, ...] = ("queued", "submitted", "running", "requeued")
# no more work will happen without a new claim
FINISHED: tuple[str, ...] = ("completed", "failed", "cancelled")
# the endings that leave a run untrained: `harness retry` trains them again
UNTRAINED_ENDINGS: tuple[str, ...] = ("failed", "cancelled")
# a launcher may claim a run in these states (a failed or cancelled run is trained again)
CLAIMABLE: tuple[str, ...] = ("pending", "failed", "cancelled")

# new state -> the states a run may move to it from
MOVES_TO: dict[str, tuple[str, ...]] = {
    "pending": ("queued",),  # a launcher released a run it never submitted
    "queued": CLAIMABLE,
    "submitted": ("queued",),
    "running": ("queued", "submitted", "requeued", "running"),  # a job may start before its launcher notes it
    "requeued": ("submitted", "running"),
    "completed": ("running",),
    "failed": ACTIVE,
    "cancelled": ("pending",) + ACTIVE,
}
# a run whose owner is judged dead is taken over by a new owner in one move, from any active state straight to
# queued (never through failed, where a launch waiting on it would fail its own runs); `claim` keeps to
# MOVES_TO["queued"], so only `take_over`, which names the dead owner, makes this move
TAKE_OVER_FROM: tuple[str, ...] = ACTIVE


def allowed_from(new: str) -> tuple[str, ...]:
    """The states a run may move to `new` from; an unknown state is a ValueError."""
    try:
        return MOVES_TO[new]
    except KeyError:
        raise ValueError(f"unknown run state '{new}'; states: {', '.join(STATUSES)}") from None


def can_move(old: str, new: str) -> bool:
    return old in allowed_from(new)


@dataclass(frozen=True)
class Owner:
    """Who holds a claim: a random token, and the launcher process behind it (checked directly on its host)."""

    token: str
    host: str
    pid: int
    # the process's start time (seconds since the epoch): a pid alone may belong to another process by now
    started: float
    # the machine beyond its host name: its boot id and the process's PID namespace (None: not known, and then
    # no machine can see the process: it is judged by its lease)
    boot: str | None = None
    pidns: str | None = None


# seconds a claim lives without renewal unless HARNESS_LEASE_S says otherwise
DEFAULT_LEASE_S = 300.0
# renewals per lease: a job beats its heartbeat, and a waiting launcher renews its claims, every tenth of it
RENEWALS_PER_LEASE = 10


def lease() -> timedelta:
    """How long a claim lives without renewal: HARNESS_LEASE_S seconds (default 300).

    Read when a claim is made or renewed, by the store, a job's heartbeat and `harness.launch.liveness` alike;
    a short lease (tests) lets a frozen owner lose its runs within seconds."""
    text = os.environ.get("HARNESS_LEASE_S", "").strip()
    if not text:
        return timedelta(seconds=DEFAULT_LEASE_S)
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds < 10**9:
        raise ValueError(f"HARNESS_LEASE_S must be a positive number of seconds, not '{text[:40]}'")
    return timedelta(seconds=seconds)


def renew_every_s() -> float:
    """Seconds between two renewals of a claim (a job's heartbeat, a waiting launcher): a tenth of the lease."""
    return lease().total_seconds() / RENEWALS_PER_LEASE
