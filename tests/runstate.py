"""Putting a registered run in a given state through the lifecycle's own moves (tests only)."""

from __future__ import annotations

from harness.states import Owner

TEST_OWNER = Owner(token="test-owner", host="test-host", pid=1, started=0.0)

# the moves that lead from pending to each state
_PATHS = {
    "pending": (),
    "queued": ("claim",),
    "submitted": ("claim", "submit"),
    "running": ("claim", "submit", "start"),
    "requeued": ("claim", "submit", "start", "requeue"),
    "completed": ("claim", "submit", "start", "completed"),
    "failed": ("claim", "submit", "start", "failed"),
    "cancelled": ("claim", "cancelled"),
}


def drive(store, run_hash: str, status: str, *, owner: Owner = TEST_OWNER, job_id: str = "local:1",
          error: str | None = None, host: str = "node1", provenance: dict | None = None) -> None:
    """Move a pending (or finished) run to `status`; each move must be accepted by the store."""
    for move in _PATHS[status]:
        if move == "claim":
            ok = store.claim(run_hash, owner)
        elif move == "submit":
            ok = store.record_submission(run_hash, owner.token, job_id)
        elif move == "start":
            ok = store.mark_started(run_hash, owner.token, host, provenance or {})
        elif move == "requeue":
            ok = store.requeue(run_hash, owner.token)
        elif move == "cancelled":
            ok = store.cancel(run_hash, error or "cancelled by the user")
        else:
            ok = store.finish(run_hash, owner.token, move, error=error)
        assert ok, f"the store refused '{move}' on the way to {status}"
