"""Shared fixtures: temporary results stores on SQLite files and on a real PostgreSQL server.

- `sqlite_url`: a SQLite file in the test's tmp_path (no schema yet).
- `pg_url`: a fresh, empty PostgreSQL database, dropped after the test. The server is
  HARNESS_TEST_PG_URL (default postgresql+psycopg://harness:harness@127.0.0.1:5432/harness_test;
  `.ci/postgres.sh` starts one). In CI (CI=true) an unreachable server fails the test; elsewhere
  the test is skipped with the reason.
- `store_url`: parametrized over both backends ("sqlite", "postgresql").
- `store` / `sqlite_store`: an open store at `store_url` / on a SQLite file, closed afterwards.
- `planned`: a function making PlannedRuns without spec files or model look-ups.
- `importable_by_jobs`: the repository on PYTHONPATH, so that the processes of submitit's local executor can
  unpickle job callables defined under tests/ (tests/local_jobs.py).

Two lanes (README, "Tests"): `make test-fast` runs `-m "not slow"`; `make test` runs everything over pytest-xdist
workers (`--dist loadgroup`). Besides the tests marked slow by hand (training, processes), every test that needs
the SLURM, a PostgreSQL server or jobs of the local executor is slow (`pytest_collection_modifyitems`). Under
xdist, each test's PostgreSQL database (or schema) and role is its own, named by a fresh uuid; the one SLURM node
takes the tests of one worker only (the `slurm` xdist group), so that no test waits behind another's jobs.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Iterator

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DEFAULT_PG_URL = "postgresql+psycopg://harness:harness@127.0.0.1:5432/harness_test"
# fixtures whose tests leave the fast lane: a service or job processes, each seconds of a test's time
SLOW_FIXTURES = {"slurm", "pg_url", "_pg_admin", "importable_by_jobs"}


def _uses_slurm(item: pytest.Item) -> bool:
    return "slurm" in getattr(item, "fixturenames", ()) or "slurm" in item.nodeid.split("::")[0]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        params = getattr(getattr(item, "callspec", None), "params", {})
        if names & SLOW_FIXTURES or params.get("store_url") == "postgresql":
            item.add_marker(pytest.mark.slow)
        if _uses_slurm(item):
            item.add_marker(pytest.mark.slow)
            item.add_marker(pytest.mark.xdist_group("slurm"))


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def _pg_admin():
    """An AUTOCOMMIT engine on the test server's maintenance database (creates per-test databases)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    url = make_url(os.environ.get("HARNESS_TEST_PG_URL") or DEFAULT_PG_URL)
    engine = create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure to reach the server, or to log in to it
        engine.dispose()
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        reason = (f"PostgreSQL at {url.render_as_string(hide_password=True)} cannot be used: "
                  f"{first[0] if first else type(exc).__name__}; run .ci/postgres.sh or set HARNESS_TEST_PG_URL")
        if _in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    yield engine, url
    engine.dispose()


@pytest.fixture
def pg_url(_pg_admin, monkeypatch) -> Iterator[str]:
    """A fresh database (or, for a role that may not create databases, a fresh schema), dropped afterwards. Its
    password is in PGPASSWORD, as the README advises, not in the URL: a password in `--db` draws a warning."""
    from sqlalchemy import text
    from sqlalchemy.exc import ProgrammingError

    engine, url = _pg_admin
    if url.password is not None:
        monkeypatch.setenv("PGPASSWORD", str(url.password))
        url = url.__class__.create(url.drivername, url.username, None, url.host, url.port, url.database, url.query)
    name = f"harness_t_{uuid.uuid4().hex[:12]}"
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except ProgrammingError:  # no CREATEDB privilege: a schema in the test database instead
        with engine.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{name}"'))
        yield url.update_query_dict({"options": f"-csearch_path={name}"}).render_as_string(hide_password=False)
        with engine.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        return
    yield url.set(database=name).render_as_string(hide_password=False)
    _drop_database(engine, name)


def _drop_database(engine, name: str) -> None:
    """Drop a test database; an autovacuum worker still in it (a superuser's process, which FORCE may not end
    for us) leaves within moments."""
    import time

    from sqlalchemy import text
    from sqlalchemy.exc import ProgrammingError

    for attempt in range(20):
        try:
            with engine.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            return
        except ProgrammingError:
            if attempt == 19:
                raise
            time.sleep(0.25)


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'harness.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request) -> str:
    return request.getfixturevalue("pg_url" if request.param == "postgresql" else "sqlite_url")


@pytest.fixture
def store(store_url):
    from harness.store import open_store

    opened = open_store(store_url)
    yield opened
    opened.close()


@pytest.fixture
def sqlite_store(sqlite_url):
    from harness.store import open_store

    opened = open_store(sqlite_url)
    yield opened
    opened.close()


PLANNED_MODELS = ("tiny_vit", "tiny_cnn")


def _planned(n: int = 4, spec: str = "ablation", profile: str | None = "quick", seeds: int = 1,
             start: int = 0) -> list:
    """n runs over a model axis and seeds: variant v<i>, coords {"model.name": ...} (start: another set)."""
    from harness.config import DataConfig, ModelConfig, RunConfig, run_hash
    from harness.spec import PlannedRun

    runs = []
    for i in range(start, start + n):
        for seed in range(seeds):
            model = PLANNED_MODELS[i % len(PLANNED_MODELS)]
            config = RunConfig(model=ModelConfig(name=model), data=DataConfig(name="digits", img_size=32),
                               batch_size=64 + i, seed=seed)
            runs.append(PlannedRun(hash=run_hash(config), config=config, spec=spec, profile=profile,
                                   variant=f"v{i}", label=f"Variant {i}", coords={"model.name": model}, seed=seed))
    return runs


@pytest.fixture
def planned():
    return _planned


@pytest.fixture
def importable_by_jobs(monkeypatch) -> None:
    repo = str(Path(__file__).resolve().parent.parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p))
