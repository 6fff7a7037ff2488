"""A SQLite store's write lock held by another process (harness/store/locks.py, `db.with_retry`): a writer waits
for it past the busy timeout and writes once it is let go; a lock that is never let go (a process stopped in
the middle of a write, as Ctrl-Z leaves one) is one line that names the process, from the library and from
`harness run`, never a traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.store import StoreLocked, open_store
from harness.store import db as store_db
from harness.store.locks import write_lock_holders
from tests.freeze import is_stopped
from tests.tiny_spec import tiny_spec

# SQLite write locks held by other processes: the full suite's, not the fast lane's
pytestmark = pytest.mark.slow

# takes the store's write lock, says so, then holds it for argv[2] seconds, or forever stopped ("stop")
HOLDER = """
import os, signal, sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
if sys.argv[2] == "stop":
    os.kill(os.getpid(), signal.SIGSTOP)
time.sleep(float(sys.argv[2]) if sys.argv[2] != "stop" else 0)
connection.execute("COMMIT")
"""


@pytest.fixture
def store_file(tmp_path, monkeypatch) -> Path:
    """A real store, opened below with a busy timeout of 0.1 s instead of 30 s: every attempt gives up soon."""
    monkeypatch.setattr(store_db, "BUSY_TIMEOUT_MS", 100)
    path = tmp_path / "harness.db"
    open_store(f"sqlite:///{path}").close()
    return path


def hold_lock(path: Path, how: str) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), how], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    if how == "stop":
        deadline = time.monotonic() + 30
        while not is_stopped(holder.pid):
            assert time.monotonic() < deadline, "the lock holder never stopped"
            time.sleep(0.02)
    return holder


def release(holder: subprocess.Popen) -> None:
    holder.send_signal(signal.SIGCONT)
    holder.kill()
    holder.wait()


def test_a_writer_waits_past_the_busy_timeout_and_writes_once_the_lock_is_let_go(store_file):
    holder = hold_lock(store_file, "1.5")
    try:
        started = time.monotonic()
        with open_store(f"sqlite:///{store_file}") as store:
            store.register_experiment("waited", "name: waited", "waited.yaml")
            waited = time.monotonic() - started
            assert [e.name for e in store.experiments()] == ["waited"]
    finally:
        release(holder)
    assert waited > 1.0, waited  # it met the lock, many busy timeouts long, and went on once it was free


def test_a_lock_never_let_go_names_the_stopped_process_that_holds_it(store_file):
    holder = hold_lock(store_file, "stop")
    try:
        assert [h.pid for h in write_lock_holders(store_file)] == [holder.pid]
        with open_store(f"sqlite:///{store_file}") as store:
            with pytest.raises(StoreLocked) as raised:
                store.register_experiment("blocked", "name: blocked", "blocked.yaml")
            assert store.experiments() == []  # reading is never blocked by a writer (WAL)
    finally:
        release(holder)
    message = str(raised.value)
    assert f"stayed locked for" in message and str(store_file) in message
    assert f"process {holder.pid} (" in message and f"kill -CONT {holder.pid}" in message, message


def test_harness_run_on_a_locked_store_is_one_line_naming_the_holder_and_exit_2(store_file, tmp_path):
    spec = tmp_path / "locked.yaml"
    spec.write_text(tiny_spec("locked"))
    holder = hold_lock(store_file, "stop")
    try:
        result = CliRunner().invoke(app, ["run", str(spec), "--db", f"sqlite:///{store_file}", "--output",
                                          str(tmp_path / "out"), "--executor", "local"])
    finally:
        release(holder)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("error: the results store at sqlite:///") and "Traceback" not in result.output, lines
    assert f"process {holder.pid}" in lines[-1] and "stopped" in lines[-1], lines[-1]
    with open_store(f"sqlite:///{store_file}") as store:
        assert store.runs() == []  # and nothing was half registered


def test_only_a_write_lock_on_the_write_byte_of_that_file_counts(tmp_path):
    database = tmp_path / "x.db"
    shm = Path(f"{database}-shm")
    shm.write_bytes(b"")
    stat = os.stat(shm)
    device = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    other = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino + 1}"
    locks = tmp_path / "locks"
    locks.write_text(f"""1: POSIX  ADVISORY  WRITE 101 {device} 120 120
1: -> POSIX  ADVISORY  WRITE 102 {device} 120 120
2: POSIX  ADVISORY  READ 103 {device} 120 120
3: POSIX  ADVISORY  WRITE 104 {device} 128 128
4: POSIX  ADVISORY  WRITE 105 {other} 120 120
5: FLOCK  ADVISORY  WRITE 106 {device} 0 EOF
6: POSIX  ADVISORY  WRITE 107 {device} 0 EOF
""")
    assert [h.pid for h in write_lock_holders(database, locks)] == [101, 107]
    assert write_lock_holders(tmp_path / "missing.db", locks) == []
