"""What the store raises."""

from __future__ import annotations


class StoreError(Exception):
    """A problem with the results store that the user can act on (the message says how)."""


class NoStore(StoreError):
    """There is no results store at the URL yet (a missing SQLite file, an empty database)."""


class SchemaOutOfDate(StoreError):
    """The store was written with an older schema: `harness db upgrade --db URL` brings it up to date."""


class UnknownRun(StoreError, KeyError):
    """A run hash that is not in the store."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown run"


class NotOwner(StoreError):
    """A write refused because the writer's claim on the run is gone: the run was cancelled, or given up and
    claimed by another launch. Nothing was written; the writer must stop working on the run."""

    def __init__(self, message: str, status: str | None = None, owner: str | None = None):
        super().__init__(message)
        # the run's state and owner token as the refusal found them
        self.status = status
        self.owner = owner


class StoreUnreachable(StoreError):
    """The database server cannot be reached (connection refused or lost, server shutting down) and did not
    come back within the store's patience."""


class StoreLocked(StoreError):
    """A SQLite store whose write lock another process held for longer than every attempt waited: a process
    stopped or hung in the middle of a write (the message names it where the system says who holds it)."""
