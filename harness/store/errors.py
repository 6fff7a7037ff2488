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
