"""Schema revisions through Alembic: create a new store, check an open one, upgrade an old one.

A new store (an empty database) is built by running every migration, so a fresh store and an
upgraded one are the same schema. An existing store whose revision is older than this harness's
head is refused with the command that upgrades it; one that is newer asks for a newer harness.
"""

from __future__ import annotations

import contextlib
import fcntl
from pathlib import Path
from typing import Iterator

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from harness.paths import default_db_url
from harness.store.db import display_url, make_engine, parse_url, sqlite_path, unreachable
from harness.store.errors import NoStore, SchemaOutOfDate, StoreError

MIGRATIONS = Path(__file__).with_name("migrations")
# a PostgreSQL advisory lock key, held while a store is created or upgraded
PG_LOCK_KEY = 0x6465_6954


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def revisions() -> list[str]:
    """All revisions, oldest first."""
    script = ScriptDirectory.from_config(alembic_config())
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def is_empty(connection: Connection) -> bool:
    return not inspect(connection).get_table_names()


def upgrade(engine: Engine, url: URL, revision: str = "head") -> tuple[str | None, str]:
    """Bring the store to `revision` (a new database gets the whole schema); returns (before, after)."""
    with _exclusive(engine, url) as conn:
        before = current_revision(conn)
        if before is None and not is_empty(conn):
            raise StoreError(f"{display_url(url)} holds tables but no schema revision: not a harness results store")
        if before is not None and before not in revisions():
            raise StoreError(newer_store(url, before))
        command.upgrade(alembic_config(conn), revision)
        after = current_revision(conn)
    assert after is not None
    return before, after


def ensure_current(engine: Engine, url: URL, create: bool = True) -> None:
    """Create a new store's schema, or check that an existing store is at this harness's head."""
    head = head_revision()
    with engine.connect() as conn:
        if current_revision(conn) == head:
            return
    if not create:
        with engine.connect() as conn:
            found = current_revision(conn)
            check(found, head, url, empty=found is None and is_empty(conn))
        return
    # what we read so far may be half of another process's schema creation: decide under its lock
    with _exclusive(engine, url) as conn:
        found = current_revision(conn)
        empty = found is None and is_empty(conn)
        if empty:
            command.upgrade(alembic_config(conn), "head")
            return
    check(found, head, url, empty)


def check(found: str | None, head: str, url: URL, empty: bool = False) -> None:
    shown = display_url(url)
    if found == head:
        return
    if found is None:
        if empty:
            raise NoStore(f"{shown} has no results store yet; create it with `harness db upgrade --db {shown}`")
        raise StoreError(f"{shown} holds tables but no schema revision: not a harness results store")
    if found in revisions():
        raise SchemaOutOfDate(
            f"the results store at {shown} has schema revision {found}, this harness needs {head}: "
            f"run `harness db upgrade --db {shown}` (back up the database first)")
    raise StoreError(newer_store(url, found))


def newer_store(url: URL, found: str) -> str:
    return (f"the results store at {display_url(url)} has schema revision {found}, which this harness does not "
            f"know (its newest is {head_revision()}): it was written by a newer harness; upgrade the harness")


@contextlib.contextmanager
def _exclusive(engine: Engine, url: URL) -> Iterator[Connection]:
    """A connection held alone while the schema changes (two processes creating one store at once)."""
    path = sqlite_path(url)
    if engine.dialect.name == "sqlite":
        lock = path.with_name(path.name + ".migrate-lock") if path is not None else None
        with file_lock(lock), engine.connect() as conn:
            yield conn
            conn.commit()
        return
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": PG_LOCK_KEY})
            conn.commit()
        try:
            yield conn
            conn.commit()
        finally:
            if engine.dialect.name == "postgresql":
                conn.rollback()
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": PG_LOCK_KEY})
                conn.commit()


@contextlib.contextmanager
def file_lock(path: Path | None) -> Iterator[None]:
    """An exclusive lock on the file at `path` (none: no lock), held until the block ends; the kernel lets go of
    it when the process ends, however it ends."""
    if path is None:
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def upgrade_store(url: str | URL | None = None, revision: str = "head") -> tuple[str | None, str]:
    """`harness db upgrade`: bring the store at `url` (a new one is created) to `revision`; (before, after)."""
    parsed = _url(url)
    engine = make_engine(parse_url(parsed))
    try:
        return upgrade(engine, parsed, revision)
    except DBAPIError as exc:
        raise unreachable(parsed, exc) from None
    finally:
        engine.dispose()


def store_revision(url: str | URL | None = None) -> tuple[str | None, str]:
    """(the store's revision or None, this harness's head revision), creating nothing."""
    parsed = _url(url)
    path = sqlite_path(parsed)
    if path is not None and not path.exists():
        return None, head_revision()
    engine = make_engine(parsed)
    try:
        with engine.connect() as conn:
            return current_revision(conn), head_revision()
    except DBAPIError as exc:
        raise unreachable(parsed, exc) from None
    finally:
        engine.dispose()


def _url(url: str | URL | None) -> URL:
    if url is None:
        url = default_db_url()
    return parse_url(url)
