"""The store's password never reaches the disk: a PostgreSQL run leaves it in no file under the output folder.

A role with a password of its own (nothing else in the tree could contain it) owns a fresh database; `harness
run` trains with that URL on the local executor and on SLURM, then every file the launch wrote is searched. Every
form libpq takes a password in is tried: `user:password@`, `?password=`, a `passfile`, a `service` file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from harness.launch import secrets
from harness.words import redact
from harness.store.db import display_url
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


# the forms a URL carries a password in: (URL with PW standing for the password, what a job is given instead)
URL_FORMS = {
    "userinfo": ("postgresql+psycopg://alice:PW@db:5432/h?sslmode=prefer", "postgresql+psycopg://alice@db:5432/h?sslmode=prefer"),
    "query": ("postgresql+psycopg://alice@db:5432/h?password=PW&sslmode=prefer",
              "postgresql+psycopg://alice@db:5432/h?sslmode=prefer"),
    "query, its name percent-encoded": ("postgresql+psycopg://alice@db/h?sslmode=prefer&pass%77ord=PW",
                                        "postgresql+psycopg://alice@db/h?sslmode=prefer"),
}


@pytest.mark.parametrize("form", sorted(URL_FORMS))
def test_every_password_form_of_a_url_is_kept_from_jobs_and_printed_urls(form):
    template, bare = URL_FORMS[form]
    url = template.replace("PW", "s3cr3t-pw")
    assert secrets.job_url(url) == bare
    assert secrets.password_of(url) == "s3cr3t-pw"
    with secrets.password_in_environment(url):
        assert os.environ[secrets.PASSWORD_ENV] == "s3cr3t-pw"
    for shown in (display_url(url), redact(f"harness run spec.yaml --db {url} --executor local")):
        assert "s3cr3t" not in shown and "***" in shown and "alice" in shown, shown


@pytest.mark.parametrize("url", ["postgresql+psycopg://alice@db/h?passfile=/home/alice/.pgpass",
                                 "postgresql+psycopg://alice@db/h?service=lab", "postgresql+psycopg://alice@db/h"])
def test_a_url_naming_a_password_file_keeps_it_and_sets_no_password(url):
    """libpq reads a passfile or a service file in the job itself: the job needs the name, and holds no password."""
    assert secrets.job_url(url) == url and secrets.password_of(url) is None
    before = os.environ.get(secrets.PASSWORD_ENV)
    with secrets.password_in_environment(url):
        assert os.environ.get(secrets.PASSWORD_ENV) == before


def test_a_password_on_the_command_line_gets_one_warning_naming_the_safer_ways(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from harness.cli import app

    runner = CliRunner()
    url = f"sqlite:///{tmp_path}/h.db"
    quiet = runner.invoke(app, ["db", "info", "--db", url])
    assert quiet.exit_code == 0 and "warning" not in quiet.output
    pg = "postgresql+psycopg://alice@127.0.0.1:1/h?password=s3cr3t-pw"
    monkeypatch.setenv("HARNESS_STORE_PATIENCE_S", "0")
    for args in (["db", "info", "--db", pg], ["retry", "--failed", "--db", pg]):
        told = runner.invoke(app, args)
        warnings = [line for line in told.stderr.splitlines() if line.startswith("warning:")]
        assert len(warnings) == 1, told.stderr
        assert all(way in warnings[0] for way in ("HARNESS_DB", "PGPASSWORD", "~/.pgpass")), warnings
        assert "s3cr3t" not in told.output
    monkeypatch.setenv("HARNESS_DB", pg)
    assert "warning" not in runner.invoke(app, ["db", "info"]).stderr


def _pgpass(tmp_path: Path, url: str, password: str) -> Path:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    path = tmp_path / "secret-files" / "pgpass"
    path.parent.mkdir()
    path.write_text(f"{parsed.host}:{parsed.port or 5432}:{parsed.database}:{parsed.username}:{password}\n")
    path.chmod(0o600)  # libpq ignores a password file others can read
    return path


@pytest.mark.slow
@pytest.mark.parametrize("form", ["query", "passfile", "service"])
def test_no_file_or_output_of_a_run_db_info_and_export_holds_the_password(tmp_path, secret_url, form):
    """A run on the local executor, `harness db info`, `harness results` and `harness export mlflow`, with the
    password in each form libpq takes that is no `user:password@`: the password is in no file under the output
    folder (job files, logs, provenance, the MLflow store) and in nothing printed."""
    from sqlalchemy.engine import make_url

    pytest.importorskip("mlflow")
    url, password = secret_url
    bare = make_url(url).set(password=None)
    bare = bare.__class__.create(bare.drivername, bare.username, None, bare.host, bare.port, bare.database)
    extra_env: dict[str, str] = {}
    if form == "query":
        given = bare.update_query_dict({"password": password}).render_as_string(hide_password=False)
    elif form == "passfile":
        given = bare.update_query_dict({"passfile": str(_pgpass(tmp_path, url, password))}).render_as_string(False)
    else:
        services = tmp_path / "secret-files" / "pg_service.conf"
        services.parent.mkdir()
        services.write_text(f"[lab]\nhost={bare.host}\nport={bare.port or 5432}\ndbname={bare.database}\n"
                            f"user={bare.username}\npassword={password}\n")
        given = "postgresql+psycopg:///?service=lab"
        extra_env["PGSERVICEFILE"] = str(services)
    done = run_harness(tmp_path, given, "--executor", "local", extra_env=extra_env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 trained now" in done.stdout, done.stdout
    assert list((tmp_path / "runs").rglob("*_submitted.pkl")), "the launch wrote no job file to search"
    printed = done.stdout + done.stderr
    env = {**harness_env(**extra_env)}
    env.pop("PGPASSWORD", None)
    tracking = f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    for args in (["db", "info"], ["results", "--format", "json"], ["export", "mlflow", "--tracking-uri", tracking]):
        shown = subprocess.run([sys.executable, "-m", "harness", *args, "--db", given], cwd=REPO, env=env,
                               capture_output=True, text=True, timeout=300)
        assert shown.returncode == 0, shown.stdout + shown.stderr
        printed += shown.stdout + shown.stderr
    assert "exported to" in printed and "1 run" in printed.split("exported to", 1)[1]
    assert password not in printed
    assert files_holding(tmp_path / "runs", password) == []
