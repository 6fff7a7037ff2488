"""A store that cannot be used is one line and exit code 2 from every command, never a traceback or a password."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from harness.cli import app
from harness.store import open_store

runner = CliRunner()
SPEC = "name: s\nbase: {data.name: digits, model.name: deit_tiny_patch4_32}\n"
PASSWORD = "wrong-pw-7f3a9c"


def commands(spec: Path, db: str) -> dict[str, list[str]]:
    return {
        "run": ["run", str(spec), "--db", db, "--executor", "local"],
        "run --dry-run": ["run", str(spec), "--db", db, "--dry-run"],
        "status": ["status", "--db", db],
        "logs": ["logs", "abcd", "--db", db],
        "cancel": ["cancel", "s", "--db", db],
        "retry": ["retry", "--failed", "--db", db],
        "results": ["results", "--db", db],
        "report": ["report", "--table", "3", "--db", db],
        "db info": ["db", "info", "--db", db],
        "db upgrade": ["db", "upgrade", "--db", db],
    }


def corrupt_sqlite(tmp_path: Path) -> str:
    path = tmp_path / "corrupt.db"
    path.write_bytes(b"this is not a database " * 400)
    return f"sqlite:///{path}"


def newer_store(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'newer.db'}"
    with open_store(url) as store, store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    return url


def wrong_password(tmp_path: Path) -> str:
    return f"postgresql+psycopg://harness:{PASSWORD}@127.0.0.1:5432/harness_test"


def no_driver(tmp_path: Path) -> str:
    return f"postgresql+pg8000://harness:{PASSWORD}@127.0.0.1:5432/harness_test"


STORES = {"corrupt SQLite file": (corrupt_sqlite, "file is not a database"),
          "store of a newer harness": (newer_store, "newer harness"),
          "wrong PostgreSQL password": (wrong_password, "authentication failed (password authentication failed for "
                                                        "user \"harness\"); check the user and password"),
          "missing driver": (no_driver, "no database driver")}


@pytest.mark.parametrize("store", sorted(STORES))
@pytest.mark.parametrize("command", sorted(commands(Path("x"), "y")))
def test_every_command_says_what_is_wrong_with_the_store_in_one_line(tmp_path, store, command, request):
    make, message = STORES[store]
    if store == "wrong PostgreSQL password":
        request.getfixturevalue("_pg_admin")  # a server that answers, so that it is the password it refuses
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    db = make(tmp_path)
    result = runner.invoke(app, commands(spec, db)[command], catch_exceptions=False)
    # a password given with --db draws one warning (harness/cli/common.py) before any error: not an error line
    warned = [line for line in result.stderr.splitlines() if line.startswith("warning: --db holds a password")]
    assert len(warned) == (1 if PASSWORD in db else 0), result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and line not in warned]
    if command == "db info" and store == "store of a newer harness":
        # describing a store is not an error: it says to upgrade the harness, never to run `db upgrade`
        assert result.exit_code == 0 and "newer harness: upgrade the harness" in result.stdout, result.output
        assert "harness db upgrade" not in result.stdout
        return
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.output and PASSWORD not in result.output


def test_a_wrong_password_is_refused_at_once_never_waited_for_as_a_server_out_of_reach(tmp_path, monkeypatch,
                                                                                        _pg_admin):
    import harness.store.db as db
    from harness.store import StoreError

    def no_waiting(seconds):
        raise AssertionError(f"waited {seconds} s on a refused login")

    monkeypatch.setenv("HARNESS_STORE_PATIENCE_S", "3600")
    monkeypatch.setattr(db.time, "sleep", no_waiting)
    with pytest.raises(StoreError) as caught:
        open_store(wrong_password(tmp_path), wait=True)  # as a job opens it: patient with a server out of reach
    message = str(caught.value)
    assert "authentication failed" in message and "out of reach" not in message and PASSWORD not in message


def test_a_traceback_never_prints_local_variables():
    # typer's pretty tracebacks show every local by default in older releases: URLs and their passwords
    assert app.pretty_exceptions_show_locals is False
