"""The store's password never reaches the disk: a PostgreSQL run leaves it in no file under the output folder.

A role with a password of its own (nothing else in the tree could contain it) owns a fresh database; `harness
run` trains with that URL on the local executor and on SLURM, then every file the launch wrote is searched.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from harness.launch import secrets
from tests.slurm_fixtures import slurm  # noqa: F401  (a fixture)
from tests.tiny_spec import REPO, harness_env, tiny_spec

SPEC = tiny_spec("secrets")


@pytest.fixture
def secret_url(_pg_admin):
    """A database owned by a fresh role whose password appears nowhere else."""
    from sqlalchemy import text

    from tests.conftest import _drop_database

    engine, url = _pg_admin
    role, password = f"h_{uuid.uuid4().hex[:10]}", f"pw-{uuid.uuid4().hex}"
    with engine.connect() as conn:
        conn.execute(text(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'"))
        conn.execute(text(f'GRANT "{role}" TO CURRENT_USER'))  # to hand it a database of its own
        conn.execute(text(f'CREATE DATABASE "{role}" OWNER "{role}"'))
    yield url.set(username=role, password=password, database=role).render_as_string(hide_password=False), password
    _drop_database(engine, role)
    with engine.connect() as conn:
        conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))


def files_holding(root: Path, secret: str) -> list[str]:
    needle = secret.encode()
    return [str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def run_harness(tmp_path: Path, url: str, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    spec = tmp_path / "secrets.yaml"
    spec.write_text(SPEC)
    env = harness_env(**(extra_env or {}))
    env.pop("PGPASSWORD", None)
    return subprocess.run([sys.executable, "-m", "harness", "run", str(spec), "--db", url,
                           "--output", str(tmp_path / "runs"), *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_a_job_gets_the_url_without_its_password():
    url = "postgresql+psycopg://alice:s3cr3t@db:5432/harness"
    assert secrets.job_url(url) == "postgresql+psycopg://alice@db:5432/harness"
    assert secrets.job_url("sqlite:///runs/harness.db") == "sqlite:///runs/harness.db"
    with secrets.password_in_environment(url):
        assert os.environ[secrets.PASSWORD_ENV] == "s3cr3t"
    assert secrets.PASSWORD_ENV not in os.environ or os.environ[secrets.PASSWORD_ENV] != "s3cr3t"


@pytest.mark.slow
def test_no_file_of_a_local_postgresql_run_holds_the_password(tmp_path, secret_url):
    url, password = secret_url
    done = run_harness(tmp_path, url, "--executor", "local")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 trained now" in done.stdout and password not in done.stdout + done.stderr
    written = list((tmp_path / "runs").rglob("*_submitted.pkl"))
    assert written, "the launch wrote no job file to search"
    assert files_holding(tmp_path / "runs", password) == []


@pytest.mark.slow
def test_no_file_of_a_slurm_postgresql_run_holds_the_password(tmp_path, secret_url, slurm):  # noqa: F811
    url, password = secret_url
    done = run_harness(tmp_path, url, "--executor", "slurm", "--partition", slurm.partition, "--cpus-per-task", "1",
                       "--mem-gb", "2", "--time", "5", extra_env={"PATH": os.environ["PATH"]})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 trained now" in done.stdout
    assert list((tmp_path / "runs").rglob("*_submitted.pkl")) and list((tmp_path / "runs").rglob("*.sh"))
    assert files_holding(tmp_path / "runs", password) == []
