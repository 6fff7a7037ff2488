"""The results store: the only code that speaks SQL.

`open_store(url)` opens (and, for a new database, creates) a store; its methods register specs
and runs, record what a running job reports, and read everything back as plain `RunRecord`s.
Each method is one short transaction in `Store._session`, which commits or rolls back, and write
transactions are retried when they meet a lock or a deadlock, so many jobs can write at once.
Writes are idempotent: registering a run twice keeps one run; logging an epoch again replaces it.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import threading
import weakref
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

import numpy as np
from sqlalchemy import FromClause, Text, and_, cast, func, inspect, literal, select, true, type_coerce
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from harness.states import RunState
from harness.store import db, migrate
from harness.store import where as where_
from harness.store.claims import RunLifecycle, now_utc
from harness.store.errors import NoStore, StoreError, StoreUnreachable, UnknownRun
from harness.store.records import FINISHED, ExperimentRecord, FileRecord, RunRecord, RunTable
from harness.store.schema import (
    NO_PROFILE, EpochEnd, Experiment, FinalMetric, Metric, Prediction, Run, RunFile, RunInfo, RunMembership,
)

T = TypeVar("T")
# hashes per IN (...) list (SQLite allows 32,766 bound parameters per statement)
CHUNK = 500
# a filter that keeps at most this many runs is evaluated once; the reads after it find its runs by id
FOUND_BY_ID = 5000


@dataclass(frozen=True)
class NewRun:
    """A run to register: what `register_runs` takes from a PlannedRun, and `import_runs` from a CSV row."""

    hash: str
    config: dict[str, Any]
    profile: str | None
    variant: str
    label: str
    coords: dict[str, Any]
    seed: int
    status: str = RunState.PENDING
    source: str | None = None
    final: Mapping[str, float] | None = None
    info: Mapping[str, str] | None = None
    # hashes of the runs this run needs (its teacher, its fine-tuning source)
    depends_on: tuple[str, ...] = ()


def open_store(url: str | URL | None = None, *, create: bool = True, wait: bool = False) -> "Store":
    """Open the store at `url` (default: HARNESS_DB or sqlite:///runs/harness.db).

    A new database gets the current schema (unless `create` is False); an existing one must be at
    this harness's schema revision, or `SchemaOutOfDate` says how to upgrade it. A server out of reach is an
    error at once (a user is waiting), unless `wait` (a job: the store's patience, as for every later call).
    """
    if url is None:
        from harness.paths import default_db_url

        url = default_db_url()
    path = db.sqlite_path(db.parse_url(url))
    if not create and path is not None and not path.exists():
        # checked before the engine exists: making one creates the file's folder
        raise NoStore(f"no results store at {db.display_url(url)} (nothing has been run with this store yet)")
    store = Store(url)
    try:
        # processes creating one SQLite store at once meet locks that the busy timeout does not cover
        # (switching a new file to WAL, upgrading a read to a write): wait and try again
        db.with_retry(lambda: migrate.ensure_current(store.engine, store.url, create=create),
                      patience=store.patience_s if wait else 0.0, where=f"at {store.display_url}",
                      sqlite_file=store.sqlite_file)
    except (DBAPIError, StoreUnreachable) as exc:
        store.close()
        if isinstance(exc, StoreUnreachable):
            raise
        raise db.unreachable(store.url, exc) from None
    except BaseException:
        store.close()
        raise
    return store


class Store(RunLifecycle):
    """`patience_s`: how long each call keeps trying while the server is out of reach (None: `db.patience_s()`);
    `with_patience` gives a view of the same store with another."""

    def __init__(self, url: str | URL | None = None, patience_s: float | None = None):
        if url is None:
            from harness.paths import default_db_url

            url = default_db_url()
        self.url = db.parse_url(url)
        # the file whose lock holder a write that waited too long names (None: PostgreSQL, in-memory SQLite)
        self.sqlite_file = db.sqlite_path(self.url)
        if self.url.get_backend_name() not in ("sqlite", "postgresql"):
            raise StoreError(f"unsupported database {self.display_url}: use sqlite:///FILE or postgresql+psycopg://...")
        self.engine = db.make_engine(self.url)
        self._writer = db.writer(self.engine)
        self._ids: dict[str, int] = {}
        self._ids_lock = threading.Lock()
        dialect = sqlite if self.engine.dialect.name == "sqlite" else postgresql
        self._insert = dialect.insert
        self._statements: dict[tuple[Any, ...], Any] = {}
        self.patience_s = db.patience_s() if patience_s is None else patience_s
        _forget_connections_after_fork(self)

    def with_patience(self, seconds: float) -> "Store":
        """This store (same engine and connections) with calls that wait `seconds` for a server out of reach:
        0 for a caller that has better to do than wait (a job keeps training and tries again later)."""
        view = copy.copy(self)
        view.patience_s = seconds
        return view

    @property
    def display_url(self) -> str:
        """The URL with its password hidden: what may be printed or logged."""
        return db.display_url(self.url)

    def __repr__(self) -> str:
        return f"Store({self.display_url})"

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sessions -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _session(self, write: bool = False) -> Iterator[Session]:
        """One transaction: commits when the block ends, rolls back if it raises."""
        with Session(self._writer if write else self.engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def _write(self, work: Callable[[Session], T]) -> T:
        def attempt() -> T:
            with self._session(write=True) as session:
                return work(session)

        return db.with_retry(attempt, patience=self.patience_s, where=f"at {self.display_url}",
                             sqlite_file=self.sqlite_file)

    def _read(self, work: Callable[[Session], T]) -> T:
        def attempt() -> T:
            with self._session() as session:
                return work(session)

        return db.with_retry(attempt, patience=self.patience_s, where=f"at {self.display_url}",
                             sqlite_file=self.sqlite_file)

    def _upsert(self, session: Session, table: FromClause, rows: Sequence[dict[str, Any]], keys: Sequence[str],
                update_columns: Sequence[str] = ()) -> None:
        """INSERT ... ON CONFLICT (keys) DO UPDATE/NOTHING for every row: one statement, compiled once."""
        if rows:
            session.execute(self._upsert_statement(table, tuple(keys), tuple(update_columns)), list(rows))

    def _upsert_statement(self, table: FromClause, keys: tuple[str, ...], update_columns: tuple[str, ...]) -> Any:
        cache_key = (table.description, keys, update_columns)
        stmt = self._statements.get(cache_key)
        if stmt is None:
            stmt = self._insert(table)
            if update_columns:
                stmt = stmt.on_conflict_do_update(index_elements=list(keys),
                                                  set_={c: stmt.excluded[c] for c in update_columns})
            else:
                stmt = stmt.on_conflict_do_nothing(index_elements=list(keys))
            self._statements[cache_key] = stmt
        return stmt

    def _run_id(self, session: Session, run_hash: str) -> int:
        found = self._ids.get(run_hash)
        if found is None:
            found = session.scalar(select(Run.id).where(Run.hash == run_hash))
            if found is None:
                raise UnknownRun(f"no run {run_hash} in the store at {self.display_url}")
            with self._ids_lock:
                self._ids[run_hash] = found
        return found

    # -- experiments and runs -------------------------------------------------------------

    def register_experiment(self, name: str, spec_text: str, spec_path: str) -> None:
        """Record a spec by name (its text and path are replaced when it is registered again)."""
        def work(session: Session) -> None:
            now = now_utc()
            row = {"name": name, "spec_text": spec_text or "", "spec_path": str(spec_path or ""),
                   "created_at": now, "updated_at": now}
            self._upsert(session, Experiment.__table__, [row], ["name"], ["spec_text", "spec_path", "updated_at"])

        self._write(work)

    def experiments(self) -> list[ExperimentRecord]:
        def work(session: Session) -> list[ExperimentRecord]:
            rows = session.execute(select(Experiment.name, Experiment.spec_text, Experiment.spec_path,
                                          Experiment.created_at, Experiment.updated_at).order_by(Experiment.name))
            return [ExperimentRecord(r.name, r.spec_text, r.spec_path, _utc(r.created_at), _utc(r.updated_at))
                    for r in rows]

        return self._read(work)

    def register_runs(self, experiment: str, runs: Iterable[Any]) -> None:
        """Register planned runs (`harness.spec.PlannedRun`) under an experiment; idempotent.

        A hash already in the store keeps its status and results; its membership in this
        experiment and profile is added, or its variant, label and coordinates refreshed.
        """
        new = [NewRun(hash=r.hash, config=_config_json(r.config), profile=r.profile, variant=r.variant,
                      label=r.label, coords=dict(r.coords), seed=int(r.seed),
                      depends_on=tuple(getattr(r, "depends_on", ()))) for r in runs]
        self._register(experiment, new)

    def import_runs(self, experiment: str, runs: Iterable[NewRun]) -> int:
        """Record results obtained elsewhere (status and final metrics given); returns how many were new."""
        new = list(runs)
        known = set(self.statuses([r.hash for r in new]))
        self._register(experiment, new)
        return sum(r.hash not in known for r in new)

    def _register(self, experiment: str, runs: list[NewRun]) -> None:
        if not runs:
            return
        # in the given order (a spec's order, the same for every launch of it); a deadlock is retried
        runs = list({r.hash: r for r in runs}.values())

        def work(session: Session) -> None:
            now = now_utc()
            self._upsert(session, Experiment.__table__, [
                {"name": experiment, "spec_text": "", "spec_path": "", "created_at": now, "updated_at": now}],
                ["name"])
            exp_id = session.scalar(select(Experiment.id).where(Experiment.name == experiment))
            # a run's dependencies follow from its config (the teacher's hash is in it): refreshing them only
            # fills in what a store older than revision 3 did not record
            self._upsert(session, Run.__table__, [
                {"hash": r.hash, "config": r.config, "status": RunState(r.status).value, "source": r.source,
                 "created_at": now, "updated_at": now, "depends_on": list(r.depends_on),
                 "ended_at": now if r.status in FINISHED else None} for r in runs], ["hash"], ["depends_on"])
            ids = self._ids_of(session, [r.hash for r in runs])
            self._upsert(session, RunMembership.__table__, [
                {"experiment_id": exp_id, "run_id": ids[r.hash], "profile": r.profile or NO_PROFILE,
                 "variant": r.variant, "label": r.label, "coords": r.coords, "seed": r.seed} for r in runs],
                ["experiment_id", "run_id", "profile"], ["variant", "label", "coords", "seed"])
            finals = [{"run_id": ids[r.hash], "name": k, "value": _float(v)}
                      for r in runs for k, v in (r.final or {}).items()]
            infos = [{"run_id": ids[r.hash], "key": k, "value": str(v)} for r in runs for k, v in (r.info or {}).items()]
            if finals:
                self._upsert(session, FinalMetric.__table__, finals, ["run_id", "name"], ["value"])
            if infos:
                self._upsert(session, RunInfo.__table__, infos, ["run_id", "key"], ["value"])

        self._write(work)

    def _ids_of(self, session: Session, hashes: Sequence[str]) -> dict[str, int]:
        ids: dict[str, int] = {}
        for start in range(0, len(hashes), CHUNK):
            chunk = list(hashes[start:start + CHUNK])
            ids.update(session.execute(select(Run.hash, Run.id).where(Run.hash.in_(chunk))).all())
        with self._ids_lock:
            self._ids.update(ids)
        return ids

    def statuses(self, hashes: Iterable[str]) -> dict[str, str]:
        """Status of each given hash that is in the store (absent hashes are left out)."""
        wanted = list(dict.fromkeys(hashes))

        def work(session: Session) -> dict[str, str]:
            found: dict[str, str] = {}
            for start in range(0, len(wanted), CHUNK):
                chunk = wanted[start:start + CHUNK]
                found.update(session.execute(select(Run.hash, Run.status).where(Run.hash.in_(chunk))).all())
            return found

        return self._read(work)

    # -- what a job reports (its state moves are in claims.RunLifecycle) ----------------
    # `token`: the writer's owner token. The write then happens only while that claim holds the run, running, in
    # the same transaction (`RunLifecycle._hold`), and `NotOwner` is raised, with nothing written, once it does
    # not. Without a token (imports, tests) the write is unconditional.

    def log_epoch(self, run_hash: str, epoch: int, metrics: Mapping[str, float], *, token: str | None = None,
                  ended_at: datetime | None = None, checkpoint: FileRecord | None = None) -> None:
        """Metrics of one epoch, in one statement, and when it ended (`ended_at`, default now: a job passes the
        time the epoch ended, which a write kept through an outage would otherwise lose); an epoch logged again
        replaces the earlier values. `checkpoint`: the file written after the epoch, which becomes the run's
        checkpoint in the same transaction."""
        if not metrics and token is None and checkpoint is None:
            return
        ended = ended_at or datetime.now(timezone.utc)

        def work(session: Session) -> None:
            run_id = self._writable(session, run_hash, token)
            rows = [{"run_id": run_id, "epoch": int(epoch), "name": name, "value": _float(value)}
                    for name, value in metrics.items()]
            if rows:
                self._upsert(session, Metric.__table__, rows, ["run_id", "epoch", "name"], ["value"])
            self._upsert(session, EpochEnd.__table__, [{"run_id": run_id, "epoch": int(epoch), "ended_at": ended}],
                         ["run_id", "epoch"], ["ended_at"])
            self._publish(session, run_id, {"checkpoint": checkpoint} if checkpoint is not None else {})

        self._write(work)

    def log_final(self, run_hash: str, metrics: Mapping[str, float], info: Mapping[str, str], *,
                  token: str | None = None, files: Mapping[str, FileRecord] | None = None) -> None:
        """The final metrics and facts, and the final weights by role (published in the same transaction)."""
        def work(session: Session) -> None:
            run_id = self._writable(session, run_hash, token)
            self._publish(session, run_id, files or {})
            if metrics:
                self._upsert(session, FinalMetric.__table__,
                             [{"run_id": run_id, "name": k, "value": _float(v)} for k, v in metrics.items()],
                             ["run_id", "name"], ["value"])
            if info:
                self._upsert(session, RunInfo.__table__,
                             [{"run_id": run_id, "key": k, "value": str(v)} for k, v in info.items()],
                             ["run_id", "key"], ["value"])

        self._write(work)

    def log_predictions(self, run_hash: str, name: str, array: np.ndarray, *, token: str | None = None) -> None:
        """Store an array compactly (integers in the smallest signed type that holds them)."""
        data = _compact(np.asarray(array))

        def work(session: Session) -> None:
            run_id = self._writable(session, run_hash, token)
            self._upsert(session, Prediction.__table__, [{
                "run_id": run_id, "name": name, "dtype": data.dtype.str, "shape": list(data.shape),
                "data": data.tobytes()}], ["run_id", "name"], ["dtype", "shape", "data"])

        self._write(work)

    def _publish(self, session: Session, run_id: int, files: Mapping[str, FileRecord]) -> None:
        if files:
            self._upsert(session, RunFile.__table__,
                         [{"run_id": run_id, "role": role, "name": f.name, "sha256": f.sha256} for role, f in files.items()],
                         ["run_id", "role"], ["name", "sha256"])

    def run_files(self, run_hash: str) -> dict[str, FileRecord]:
        """The files a run's owners published, by role ('checkpoint', 'model', 'model_ema'): the only ones to read."""
        def work(session: Session) -> dict[str, FileRecord]:
            rows = session.execute(select(RunFile.role, RunFile.name, RunFile.sha256).join(Run, Run.id == RunFile.run_id)
                                   .where(Run.hash == run_hash)).all()
            return {row.role: FileRecord(row.name, row.sha256) for row in rows}

        return self._read(work)

    def _writable(self, session: Session, run_hash: str, token: str | None) -> int:
        """The run's id, once `token` (if given) is proven to hold the run in this transaction."""
        if token is not None:
            self._hold(session, run_hash, token)
        return self._run_id(session, run_hash)

    def predictions(self, run_hash: str) -> dict[str, np.ndarray]:
        def work(session: Session) -> dict[str, np.ndarray]:
            run_id = self._run_id(session, run_hash)
            rows = session.execute(select(Prediction.name, Prediction.dtype, Prediction.shape, Prediction.data)
                                   .where(Prediction.run_id == run_id).order_by(Prediction.name))
            return {r.name: np.frombuffer(r.data, dtype=np.dtype(r.dtype)).reshape(r.shape).copy() for r in rows}

        return self._read(work)

    # -- reading --------------------------------------------------------------------------

    def runs(self, spec: str | None = None, status: str | Sequence[str] | None = None,
             profile: str | None = None, hashes: Iterable[str] | None = None,
             source: str | None = None, where: where_.Node | None = None) -> list[RunRecord]:
        """One record per run, in registration order; a run in several experiments or profiles is
        described by its first membership that matches the filters. All filters are bound parameters;
        `where` is a parsed filter (`harness.store.where.parse`), evaluated in the database."""
        conditions = _conditions(spec, status, profile, source)
        wanted = None if hashes is None else list(dict.fromkeys(hashes))
        if wanted is not None and not wanted:
            return []
        if wanted is not None and len(wanted) <= CHUNK:
            conditions.append(Run.hash.in_(wanted))
        inner = spec is not None or profile is not None
        return self._read(lambda session: self._records(session, conditions + self._where(session, where), wanted,
                                                        inner))

    def run_table(self, spec: str | None = None, status: str | Sequence[str] | None = None,
                  profile: str | None = None, source: str | None = None,
                  where: where_.Node | None = None) -> RunTable:
        """The runs `runs` returns, as columns for a DataFrame (`harness.results`): JSON is left as text and
        times as the database gives them, for the caller to decode all at once rather than record by record."""
        conditions = _conditions(spec, status, profile, source)
        inner = spec is not None or profile is not None

        def work(session: Session) -> RunTable:
            chosen = list(conditions)
            if where is not None:
                compiler = where_.Compiler(session, self.engine.dialect.name)
                chosen.append(compiler(where))
                narrow = compiler.narrowing(where)
                if narrow is not None:  # metric comparisons first, through their index: configs are read only
                    few = session.execute(select(Run.id).where(narrow)).scalars().all()  # for the runs they keep
                    if len(few) <= FOUND_BY_ID:
                        chosen.append(Run.id.in_(list(few)))
                # a filter is evaluated over the runs once; the reads below then find the few it keeps by id
                found = session.execute(select(Run.id).select_from(_joined(inner)).where(and_(True, *chosen))
                                        .distinct()).scalars().all()
                if len(found) <= FOUND_BY_ID:
                    chosen = chosen + [Run.id.in_(list(found))]
            sqlite_db = self.engine.dialect.name == "sqlite"
            as_text = (lambda c: type_coerce(c, Text)) if sqlite_db else (lambda c: cast(c, Text))
            as_time = (lambda c: type_coerce(c, Text)) if sqlite_db else (lambda c: c)
            # each top-level part of the config as JSON text: runs share most parts, so the reader decodes each
            # distinct text once rather than every config whole
            if sqlite_db:
                sections = self._config_sections(session, chosen, inner)
                parts: list[Any] = [as_text(type_coerce(Run.config, Text).op("->")(literal(f'$."{key}"', Text)))
                         for key in sections]
            else:  # the keys and parts in one pass each
                each = func.jsonb_each(Run.config).table_valued("key", "value", with_ordinality="n").render_derived()
                parts = [select(func.array_agg(postgresql.aggregate_order_by(column, each.c.n)))
                         .select_from(each).correlate(Run).scalar_subquery()
                         for column in (each.c.key, cast(each.c.value, Text))]
            last_epoch = (select(func.max(Metric.epoch)).where(Metric.run_id == Run.id)
                          .correlate(Run).scalar_subquery())
            query = (select(Run.id, Run.hash, Experiment.name, RunMembership.variant, RunMembership.label,
                            RunMembership.profile, RunMembership.seed, Run.status, Run.source, Run.epoch,
                            last_epoch, Run.host, as_time(Run.started_at), as_time(Run.ended_at), Run.error,
                            as_text(RunMembership.coords), *parts)
                     .select_from(_joined(inner)).where(and_(True, *chosen)).order_by(Run.id, RunMembership.id))
            # a run in several memberships comes once, with its first membership
            seen: set[int] = set()
            rows: list[Any] = []
            for row in session.connection().execute(query).all():
                if row[0] not in seen:
                    seen.add(row[0])
                    rows.append(row)
            if not sqlite_db:
                rows, sections = _split_sections(rows)
            ids = [row[0] for row in rows]
            id_filter = self._id_filter(ids, chosen, inner)
            # each run's final metrics and info as one JSON object, built by the database: a row per run, not a
            # row per run and metric, decoded by the reader in one pass
            connection = session.connection()
            as_object = func.json_group_object if sqlite_db else (lambda k, v: cast(func.json_object_agg(k, v), Text))
            finals = connection.execute(select(FinalMetric.run_id, as_object(FinalMetric.name, FinalMetric.value))
                                        .where(id_filter(FinalMetric.run_id)).group_by(FinalMetric.run_id)
                                        ).all() if rows else []
            infos = connection.execute(select(RunInfo.run_id, as_object(RunInfo.key, RunInfo.value))
                                       .where(id_filter(RunInfo.run_id)).group_by(RunInfo.run_id)).all() if rows else []
            return RunTable(rows=[tuple(row) for row in rows], sections=sections,
                            finals=dict(finals), info=dict(infos))

        return self._read(work)

    def _config_sections(self, session: Session, chosen: list[Any], inner: bool) -> list[str]:
        """The top-level config keys of the chosen runs (SQLite), in order of first appearance (run by run, key
        by key)."""
        keys = func.json_each(Run.config).table_valued("key", "id", joins_implicitly=True)
        firsts = session.execute(select(keys.c.key, func.min(Run.id)).select_from(_joined(inner)).join(keys, true())
                                 .where(and_(True, *chosen)).group_by(keys.c.key)).all()
        first_runs = sorted({run_id for _, run_id in firsts})
        order: dict[str, tuple[int, int]] = {}
        for start in range(0, len(first_runs), CHUNK):
            chunk = first_runs[start:start + CHUNK]
            for run_id, key, at in session.execute(select(Run.id, keys.c.key, keys.c.id).select_from(Run)
                                                   .join(keys, true()).where(Run.id.in_(chunk))):
                order.setdefault(key, (run_id, at))
        return sorted((key for key, _ in firsts), key=lambda k: order[k])

    def _where(self, session: Session, node: where_.Node | None, strict: bool = True) -> list[Any]:
        return [] if node is None else [where_.Compiler(session, self.engine.dialect.name, strict)(node)]

    def completed_runs_of(self, models: Iterable[str]) -> list[RunRecord]:
        """Our completed runs (none imported) whose `model.name` is one of `models`, found in the database: what
        could tell a plan how fast its runs of these models train. No run with a model name: none."""
        node = where_.All((where_.Compare("model.name", "in", tuple(sorted(set(models)))),
                           where_.Compare("source", "==", None)))
        conditions = _conditions(None, RunState.COMPLETED, None, None)
        return self._read(lambda session: self._records(session, conditions + self._where(session, node, False),
                                                        None))

    def runs_with_info(self, key: str, values: Iterable[str]) -> list[RunRecord]:
        """The runs whose run info `key` is one of `values`, through the index on run info rather than by reading
        every run. No run that recorded `key`: none."""
        node = where_.Compare(f"info.{key}", "in", tuple(values))
        return self._read(lambda session: self._records(session, self._where(session, node, False), None))

    def get_run(self, run_hash: str) -> RunRecord | None:
        found = self.runs(hashes=[run_hash])
        return found[0] if found else None

    def _records(self, session: Session, conditions: list[Any], wanted: list[str] | None,
                 inner: bool = False) -> list[RunRecord]:
        last_epoch = (select(func.max(Metric.epoch)).where(Metric.run_id == Run.id)
                      .correlate(Run).scalar_subquery())
        query = (select(Run.id, Run.hash, Run.config, Run.status, Run.created_at, Run.started_at, Run.ended_at,
                        Run.heartbeat_at, Run.epoch, Run.host, Run.error, Run.job_id, Run.log_path, Run.source,
                        Run.provenance, Run.owner, Run.owner_host, Run.owner_pid, Run.owner_started,
                        Run.owner_boot, Run.owner_pidns,
                        Run.lease_until, Run.job_started, Run.depends_on, RunMembership.profile, RunMembership.variant, RunMembership.label,
                        RunMembership.coords, RunMembership.seed, Experiment.name.label("spec"),
                        last_epoch.label("last_epoch"))
                 .select_from(_joined(inner)).where(and_(True, *conditions))
                 .order_by(Run.id, RunMembership.id))
        rows: dict[int, Any] = {}
        keep = None if wanted is None else set(wanted)
        for row in session.connection().execute(query):  # plain rows: no ORM loading on this hot path
            if row.id not in rows and (keep is None or row.hash in keep):
                rows[row.id] = row
        if not rows:
            return []
        finals: dict[int, dict[str, float]] = {i: {} for i in rows}
        infos: dict[int, dict[str, str]] = {i: {} for i in rows}
        ids = list(rows)
        id_filter = self._id_filter(ids, conditions, inner)
        for run_id, name, value in session.execute(
                select(FinalMetric.run_id, FinalMetric.name, FinalMetric.value).where(id_filter(FinalMetric.run_id))):
            if run_id in finals:
                finals[run_id][name] = math.nan if value is None else value
        for run_id, key, text in session.execute(
                select(RunInfo.run_id, RunInfo.key, RunInfo.value).where(id_filter(RunInfo.run_id))):
            if run_id in infos:
                infos[run_id][key] = text
        return [_record(row, finals[i], infos[i]) for i, row in rows.items()]

    def _id_filter(self, ids: list[int], conditions: list[Any], inner: bool = False) -> Callable[[Any], Any]:
        if len(ids) <= CHUNK:
            return lambda column: column.in_(ids)
        # many runs: filter with the same joins in SQL rather than thousands of bound ids
        sub = select(Run.id).select_from(_joined(inner)).where(and_(True, *conditions))
        return lambda column: column.in_(sub)

    def metrics(self, hashes: Iterable[str] | None = None,
                names: Iterable[str] | None = None) -> list[tuple[str, int, str, float]]:
        """Per-epoch metrics as (hash, epoch, name, value), ordered by run, epoch and name."""
        wanted = None if hashes is None else list(dict.fromkeys(hashes))
        name_list = None if names is None else list(names)

        def work(session: Session) -> list[tuple[str, int, str, float]]:
            query = (select(Run.hash, Metric.epoch, Metric.name, Metric.value).join(Run, Run.id == Metric.run_id)
                     .order_by(Metric.run_id, Metric.epoch, Metric.name))
            if name_list is not None:
                query = query.where(Metric.name.in_(name_list))
            chunks = [None] if wanted is None else [wanted[i:i + CHUNK] for i in range(0, len(wanted), CHUNK)]
            out: list[tuple[str, int, str, float]] = []
            for chunk in chunks:
                q = query if chunk is None else query.where(Run.hash.in_(chunk))
                out.extend((h, e, n, math.nan if v is None else v) for h, e, n, v in session.execute(q))
            return out

        return self._read(work)

    def epoch_ends(self, hashes: Iterable[str]) -> dict[str, dict[int, datetime]]:
        """{hash: {epoch: when it ended}} for the runs' epochs that have a time (those logged since revision 7)."""
        wanted = list(dict.fromkeys(hashes))

        def work(session: Session) -> dict[str, dict[int, datetime]]:
            out: dict[str, dict[int, datetime]] = {}
            for i in range(0, len(wanted), CHUNK):
                query = (select(Run.hash, EpochEnd.epoch, EpochEnd.ended_at).join(Run, Run.id == EpochEnd.run_id)
                         .where(Run.hash.in_(wanted[i:i + CHUNK])))
                for run_hash, epoch, ended in session.execute(query):
                    out.setdefault(run_hash, {})[epoch] = _utc(ended) or ended
            return out

        return self._read(work)

    def counts(self) -> dict[str, int]:
        """Rows per table, and runs per status (as `runs.<status>`); a table a store of an older revision does not
        have yet is left out (`harness db info` shows such a store before it is upgraded)."""
        def work(session: Session) -> dict[str, int]:
            out = {}
            present = set(inspect(session.connection()).get_table_names())
            for model in (Experiment, Run, RunMembership, Metric, EpochEnd, FinalMetric, RunInfo, Prediction, RunFile):
                if model.__tablename__ in present:
                    out[model.__tablename__] = session.scalar(select(func.count()).select_from(model)) or 0
            for status, n in session.execute(select(Run.status, func.count()).group_by(Run.status)):
                out[f"runs.{status}"] = n
            return out

        return self._read(work)


_OPEN_STORES: "weakref.WeakSet[Store]" = weakref.WeakSet()


def _forget_connections_after_fork(store: Store) -> None:
    """A forked child must not use its parent's pooled connections: it opens its own."""
    _OPEN_STORES.add(store)


def _after_fork_in_child() -> None:
    for store in list(_OPEN_STORES):
        store.engine.dispose(close=False)


os.register_at_fork(after_in_child=_after_fork_in_child)


def _split_sections(rows: list[Any]) -> tuple[list[tuple[Any, ...]], list[str]]:
    """Rows ending in (config keys, their JSON texts) -> rows ending in one text per key of every row (None where
    a row lacks it), and those keys in order of first appearance."""
    parts = [dict(zip(row[-2] or (), row[-1] or ())) for row in rows]
    sections = list(dict.fromkeys(key for part in parts for key in part))
    return [tuple(row[:-2]) + tuple(part.get(key) for key in sections) for row, part in zip(rows, parts)], sections


def _joined(inner: bool = False) -> Any:
    """Runs with their memberships and experiments (a run without one still comes, with NULLs); `inner` where a
    filter on the spec or profile leaves out such runs anyway: the database may then start from the spec's
    memberships instead of scanning every run."""
    join = Run.__table__.join if inner else Run.__table__.outerjoin
    membership = join(RunMembership.__table__, RunMembership.run_id == Run.id)
    return (membership.join if inner else membership.outerjoin)(
        Experiment.__table__, Experiment.id == RunMembership.experiment_id)


def _conditions(spec: str | None, status: str | Sequence[str] | None, profile: str | None,
                source: str | None) -> list[Any]:
    conditions: list[Any] = []
    if spec is not None:
        conditions.append(Experiment.name == spec)
    if profile is not None:
        conditions.append(RunMembership.profile == (profile or NO_PROFILE))
    if status is not None:
        conditions.append(Run.status.in_([status] if isinstance(status, str) else list(status)))
    if source is not None:
        conditions.append(Run.source == source)
    return conditions


def _record(row: Any, final: dict[str, float], info: dict[str, str]) -> RunRecord:
    epoch = row.last_epoch if row.epoch is None or (row.last_epoch is not None and row.last_epoch > row.epoch) \
        else row.epoch
    return RunRecord(
        hash=row.hash, spec=row.spec, variant=row.variant, label=row.label, coords=row.coords or {},
        seed=row.seed, profile=row.profile or None, status=row.status, config=row.config or {}, final=final,
        info=info, epoch=epoch, started_at=_utc(row.started_at), ended_at=_utc(row.ended_at),
        heartbeat_at=_utc(row.heartbeat_at), host=row.host, error=row.error, job_id=row.job_id,
        log_path=row.log_path, source=row.source, created_at=_utc(row.created_at), provenance=row.provenance or {},
        owner=row.owner, owner_host=row.owner_host, owner_pid=row.owner_pid, owner_started=row.owner_started,
        owner_boot=row.owner_boot, owner_pidns=row.owner_pidns,
        lease_until=_utc(row.lease_until), job_started=row.job_started, depends_on=tuple(row.depends_on or ()),
    )


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def _float(value: Any) -> float | None:
    number = float(value)
    return None if math.isnan(number) else number


def _config_json(config: Any) -> dict[str, Any]:
    if hasattr(config, "as_json"):
        return config.as_json()
    if hasattr(config, "model_dump"):
        return config.model_dump(mode="json")
    return dict(config)


def _compact(array: np.ndarray) -> np.ndarray:
    if array.dtype.kind in "iu" and array.size:
        low, high = int(array.min()), int(array.max())
        for dtype in (np.int8, np.int16, np.int32, np.int64):
            info = np.iinfo(dtype)
            if info.min <= low and high <= info.max:
                return np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("<"))
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
