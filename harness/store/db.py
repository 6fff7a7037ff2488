"""Database URLs and engines: SQLite pragmas, write transactions that wait their turn, retries.

SQLite (the default) runs in WAL mode with a busy timeout and foreign keys on; a write transaction
starts with BEGIN IMMEDIATE, so two writers queue on the busy timeout instead of failing when a
read transaction tries to become a write one. PostgreSQL needs nothing of the kind. A transaction
that still meets a lock (SQLite), a serialization failure or a deadlock (PostgreSQL) is retried.

A password in a URL is never shown, in either form libpq reads (`user:password@`, `?password=`): `display_url`
renders it as ***, `without_password` drops it.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Callable, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError

from harness.states import lease
from harness.store.errors import StoreError, StoreLocked, StoreUnreachable
from harness.store.locks import write_lock_holders
from harness.words import first_line, redact

T = TypeVar("T")

# milliseconds a SQLite writer waits for the lock before SQLite gives up (then we retry)
BUSY_TIMEOUT_MS = 30_000
# attempts of one transaction that meets a lock, a serialization failure or a deadlock
RETRIES = 8
# PostgreSQL SQLSTATEs worth retrying: serialization failure, deadlock
RETRY_SQLSTATES = {"40001", "40P01"}
# PostgreSQL SQLSTATEs of a server going away: admin shutdown, crash shutdown, cannot connect now (starting up,
# shutting down); the whole class 08 is "connection exception"
GONE_SQLSTATES = {"57P01", "57P02", "57P03"}
# what libpq and psycopg say of a server out of reach where they give no SQLSTATE
GONE_TEXTS = ("connection refused", "could not connect", "connection failed", "server closed the connection",
              "connection is closed", "connection is lost", "consuming input failed", "terminating connection",
              "the database system is shutting down", "the database system is starting up", "no route to host",
              "connection timed out", "timeout expired", "connection reset", "broken pipe")
# the query parameter libpq takes a password from (postgresql://user@host/db?password=...)
PASSWORD_PARAM = "password"
# a server that answers but refuses the login (SQLSTATE class 28; libpq's words where it gives none): never out of
# reach, so never waited for: a wrong password stays wrong
REFUSED_TEXTS = ("password authentication failed", "authentication failed", "no password supplied",
                 "password is required", "pg_hba.conf rejects connection")
# seconds a store keeps trying while its server is out of reach, unless HARNESS_STORE_PATIENCE_S says otherwise
DEFAULT_PATIENCE_S = 3600.0
# the longest pause between two tries while the server is out of reach
MAX_PAUSE_S = 10.0


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
    """The URL as it may be printed or logged: a password (`user:password@` or `?password=`) replaced by ***."""
    try:
        parsed = parse_url(url)
    except StoreError:
        return "<unparseable URL>"
    shown = parsed.difference_update_query([PASSWORD_PARAM]).render_as_string(hide_password=True)
    if PASSWORD_PARAM in parsed.query:
        shown += ("&" if "?" in shown else "?") + f"{PASSWORD_PARAM}=***"
    return shown


def password_of(url: str | URL) -> str | None:
    """The password a URL carries, in either form libpq reads from a URL: `user:password@` or `?password=`.
    (A `passfile` or `service` parameter names a file that libpq reads itself: nothing the harness holds.)"""
    try:
        parsed = parse_url(url)
    except StoreError:
        return None
    if parsed.password is not None:
        return str(parsed.password)
    value = parsed.query.get(PASSWORD_PARAM)
    if isinstance(value, tuple):  # given twice: libpq keeps the last
        value = value[-1] if value else None
    return value


def without_password(url: str | URL) -> URL:
    """The same database without any password in the URL (libpq then reads PGPASSWORD, a passfile, a service)."""
    parsed = parse_url(url)
    # URL.set(password=None) would keep the password: None there means "unchanged"
    return URL.create(parsed.drivername, parsed.username, None, parsed.host, parsed.port, parsed.database,
                      parsed.difference_update_query([PASSWORD_PARAM]).query)


def unreachable(url: URL, exc: DBAPIError) -> StoreError:
    """The error for a database that cannot be opened: the safe URL and the driver's first line."""
    reason = first_line(exc.orig) if exc.orig is not None else type(exc).__name__
    if refused_login(exc):
        said = reason[reason.index("FATAL:") + 6:].strip() if "FATAL:" in reason else reason
        return StoreError(f"cannot open the results store at {display_url(url)}: authentication failed "
                          f"({redact(' '.join(said.split()))}); check the user and password in the URL, PGPASSWORD "
                          "or ~/.pgpass")
    return StoreError(f"cannot open the results store at {display_url(url)}: {redact(reason)}")


def refused_login(exc: BaseException) -> bool:
    """Whether the server answered and refused the login (a wrong password, an unknown user)."""
    if not isinstance(exc, DBAPIError):
        return False
    state = str(getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None) or "")
    text = str(exc.orig).lower()
    return state.startswith("28") or any(words in text for words in REFUSED_TEXTS)


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
                         f"'{url.drivername}' ({first_line(exc)})") from None


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
    engine = create_engine(url, pool_pre_ping=True, pool_size=1, max_overflow=3, pool_recycle=1800,
                           connect_args={"connect_timeout": 10}, json_serializer=_compact_json)
    _postgresql_events(engine)
    return engine


def idle_in_transaction_s() -> float:
    """Seconds the server lets one of our sessions sit in an open transaction: half a lease.

    A process frozen mid-transaction (SIGSTOP, a laptop lid, a stalled VM) holds the row locks of its fenced
    write, and a launch that takes its runs over would wait on them for as long as it stays frozen. The server
    ends such a session after half a lease, so its locks are gone before the lease lapses and anyone may take
    over; when the process wakes, its transaction is lost, and the retry meets the fence like any stale write."""
    return lease().total_seconds() / 2


def _postgresql_events(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        # a SET, not a startup option: PgBouncer refuses unknown startup parameters
        cursor = dbapi_connection.cursor()
        cursor.execute(f"SET idle_in_transaction_session_timeout = {max(1, round(idle_in_transaction_s() * 1000))}")
        cursor.close()
        dbapi_connection.commit()


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
        # through SQLAlchemy, so that a lock still held after the busy timeout is its OperationalError, which
        # `with_retry` knows, and not the sqlite3 module's
        conn.exec_driver_sql(f"BEGIN {mode}")


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


def out_of_reach(exc: BaseException) -> bool:
    """Whether `exc` says the database server cannot be reached now (refused, lost, shutting down, starting up),
    as opposed to an error in what was asked of it."""
    if not isinstance(exc, DBAPIError) or refused_login(exc):
        return False
    if exc.connection_invalidated:  # SQLAlchemy's dialect judged it a disconnect
        return True
    state = str(getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None) or "")
    if state in GONE_SQLSTATES or state.startswith("08"):
        return True
    text = str(exc.orig).lower()
    return isinstance(exc, OperationalError) and any(words in text for words in GONE_TEXTS)


def patience_s() -> float:
    """Seconds a store keeps trying while its server is out of reach: HARNESS_STORE_PATIENCE_S (default 3600)."""
    text = os.environ.get("HARNESS_STORE_PATIENCE_S", "").strip()
    if not text:
        return DEFAULT_PATIENCE_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not 0 <= seconds < 10**9:
        raise StoreError(f"HARNESS_STORE_PATIENCE_S must be a number of seconds, not '{text[:40]}'")
    return seconds


def with_retry(fn: Callable[[], T], attempts: int = RETRIES, patience: float = 0.0, where: str = "",
               sqlite_file: Path | None = None) -> T:
    """Run one transaction, again after a short random pause if it met a lock or a deadlock, and again with
    growing pauses for up to `patience` seconds while the server is out of reach (then `StoreUnreachable`).
    A SQLite file still locked after every attempt is `StoreLocked`, naming the process that holds the lock.

    Trying a transaction again after a lost connection is safe: the store's writes are upserts and conditional
    updates that recognise their own earlier success."""
    attempt = 0
    started = time.monotonic()
    outage: float | None = None
    pause = 0.5
    while True:
        try:
            result = fn()
        except DBAPIError as exc:
            if out_of_reach(exc):
                now = time.monotonic()
                if outage is None:
                    outage = now
                    if patience > 0:
                        _say(f"the results store {where} is out of reach ({_reason(exc)}); trying again for up "
                             f"to {patience:.0f} s")
                left = patience - (now - outage)
                if left <= 0:
                    raise StoreUnreachable(f"the results store {where} is out of reach: {_reason(exc)}"
                                           + (f" (tried for {now - outage:.0f} s)" if patience > 0 else "")) from None
                time.sleep(min(left, pause * (0.75 + random.random() / 2)))
                pause = min(MAX_PAUSE_S, pause * 2)
                continue
            attempt += 1
            if not retryable(exc):
                raise
            if attempt >= attempts:
                if sqlite_file is not None:  # on SQLite, what is retried is a lock
                    raise _locked(sqlite_file, where, time.monotonic() - started) from None
                raise
            time.sleep(min(2.0, 0.02 * 2**(attempt - 1)) * (0.5 + random.random()))
            continue
        if outage is not None and patience > 0:
            _say(f"the results store {where} answers again after {time.monotonic() - outage:.0f} s")
        return result


def _locked(sqlite_file: Path, where: str, waited_s: float) -> StoreLocked:
    holders = write_lock_holders(sqlite_file)
    held_by = ("; ".join(h.describe() for h in holders) if holders
               else "another process (a harness command or job, or any other program with the file open)")
    return StoreLocked(f"the results store {where} stayed locked for {waited_s:.0f} s: its write lock is held by "
                       f"{held_by}")


def _reason(exc: DBAPIError) -> str:
    return first_line(exc.orig, limit=300) if exc.orig is not None else type(exc).__name__


def _say(line: str) -> None:
    """One line on stderr: a launcher's user and a job's log both learn that the store is being waited for."""
    print(f"harness: {' '.join(line.split())}", file=sys.stderr, flush=True)
