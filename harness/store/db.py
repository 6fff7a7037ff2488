"""Database URLs and engines: SQLite pragmas, write transactions that wait their turn, retries.

SQLite (the default) runs in WAL mode with a busy timeout and foreign keys on; a write transaction
starts with BEGIN IMMEDIATE, so two writers queue on the busy timeout instead of failing when a
read transaction tries to become a write one. PostgreSQL needs nothing of the kind. A transaction
that still meets a lock (SQLite), a serialization failure or a deadlock (PostgreSQL) is retried.

A password in a URL is never shown: `display_url` renders it as ***.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Callable, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError

from harness.store.errors import StoreError

T = TypeVar("T")

# milliseconds a SQLite writer waits for the lock before SQLite gives up (then we retry)
BUSY_TIMEOUT_MS = 30_000
# attempts of one transaction that meets a lock, a serialization failure or a deadlock
RETRIES = 8
# PostgreSQL SQLSTATEs worth retrying: serialization failure, deadlock
RETRY_SQLSTATES = {"40001", "40P01"}


def parse_url(url: str | URL) -> URL:
    """A SQLAlchemy URL; a bare path means a SQLite file, `postgresql://` means psycopg 3."""
    if isinstance(url, URL):
        parsed = url
    elif "://" not in str(url):
        parsed = make_url(f"sqlite:///{url}")
    else:
        try:
            parsed = make_url(str(url))
        except ArgumentError:
            raise StoreError(f"not a database URL: {redact(str(url))}") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def display_url(url: str | URL) -> str:
    """The URL as it may be printed or logged: the password replaced by ***."""
    try:
        return parse_url(url).render_as_string(hide_password=True)
    except StoreError:
        return "<unparseable URL>"


def redact(text: str) -> str:
    from harness.provenance import redact

    return redact(text)


def unreachable(url: URL, exc: DBAPIError) -> StoreError:
    """The error for a database that cannot be opened: the safe URL and the driver's first line."""
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
    return StoreError(f"cannot open the results store at {display_url(url)}: {redact(reason)}")


def is_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite"


def sqlite_path(url: URL) -> Path | None:
    """The file of a SQLite URL (None for an in-memory database)."""
    if not is_sqlite(url) or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


def make_engine(url: URL) -> Engine:
    try:
        return _make_engine(url)
    except (NoSuchModuleError, ImportError) as exc:
        raise StoreError(f"cannot open the results store at {display_url(url)}: no database driver "
                         f"'{url.drivername}' ({redact(str(exc)).splitlines()[0]})") from None


def _make_engine(url: URL) -> Engine:
    if is_sqlite(url):
        path = sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
                               json_serializer=_compact_json)
        _sqlite_events(engine)
        return engine
    # a job holds one connection (two while its heartbeat thread writes): hundreds of jobs stay within
    # a server's max_connections, or go through PgBouncer
    return create_engine(url, pool_pre_ping=True, pool_size=1, max_overflow=3, pool_recycle=1800,
                         connect_args={"connect_timeout": 10}, json_serializer=_compact_json)


def _compact_json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def _sqlite_events(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        # let SQLAlchemy, not the sqlite3 module, decide when transactions begin
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.connection.driver_connection.execute(f"BEGIN {mode}")


def writer(engine: Engine) -> Engine:
    """The engine for write transactions (SQLite: BEGIN IMMEDIATE; shares the pool)."""
    if engine.dialect.name == "sqlite":
        return engine.execution_options(sqlite_begin="IMMEDIATE")
    return engine


def retryable(exc: BaseException) -> bool:
    if not isinstance(exc, DBAPIError):
        return False
    if isinstance(exc, OperationalError):
        text = str(exc.orig).lower()
        if "database is locked" in text or "database is busy" in text or "database table is locked" in text:
            return True
    state = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return state in RETRY_SQLSTATES


def with_retry(fn: Callable[[], T], attempts: int = RETRIES) -> T:
    """Run one transaction, again after a short random pause if it met a lock or a deadlock."""
    for attempt in range(attempts):
        try:
            return fn()
        except DBAPIError as exc:
            if attempt == attempts - 1 or not retryable(exc):
                raise
            time.sleep(min(2.0, 0.02 * 2**attempt) * (0.5 + random.random()))
    raise AssertionError("unreachable")
