"""Riding out the store, with real processes: a PostgreSQL server of the test's own, stopped for 60 s while
`harness run` trains, loses and duplicates nothing, and the launch waits for it instead of exiting.

The server is private to the test (`initdb` in a temporary folder, a free port, a role with a password), never
the shared one: stopping it touches no one else.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from harness.store import open_store
from tests.test_fencing import the_run
from tests.test_lifecycle import wait_for
from tests.tiny_spec import REPO, harness_env, tiny_spec

# a private PostgreSQL server stopped and started: the full suite's, not the fast lane's
pytestmark = pytest.mark.slow

OUTAGE_S = 60
# enough epochs (about a second each here, with one thread) to go on training through the whole outage
EPOCHS = 90


def _postgres_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


@dataclass
class PrivateServer:
    url: str
    data: Path
    as_owner: list[str]
    port: int

    def ctl(self, *args: str) -> None:
        subprocess.run([*self.as_owner, _postgres_bin("pg_ctl") or "pg_ctl", "-D", str(self.data), "-w", *args],
                       check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self.ctl("-l", str(self.data.parent / "server.log"), "-o",
                 f"-p {self.port} -k {self.data.parent} -c listen_addresses=127.0.0.1", "start")

    def stop(self) -> None:
        self.ctl("-m", "fast", "stop")


@pytest.fixture
def private_pg() -> Iterator[PrivateServer]:
    initdb = _postgres_bin("initdb")
    if initdb is None:
        pytest.skip("no initdb: PostgreSQL's server programs are not installed")
    # initdb refuses to run as root: the server then belongs to the postgres user
    as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    folder = Path(tempfile.mkdtemp(prefix="harness-pg-"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (folder / "pw").write_text("s3cret-outage\n")
    if as_owner:
        shutil.chown(folder, "postgres")
        shutil.chown(folder / "pw", "postgres")
    server = PrivateServer(f"postgresql+psycopg://outage:s3cret-outage@127.0.0.1:{port}/postgres", folder / "data",
                           as_owner, port)
    try:
        subprocess.run([*as_owner, initdb, "-D", str(server.data), "-U", "outage", f"--pwfile={folder / 'pw'}",
                        "--auth-host=scram-sha-256", "--auth-local=trust"], check=True, capture_output=True,
                       timeout=120)
        server.start()
        yield server
    finally:
        subprocess.run([*as_owner, _postgres_bin("pg_ctl") or "pg_ctl", "-D", str(server.data), "-m", "immediate",
                        "stop"], capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


def epoch_lines(out: Path) -> int:
    """Epochs the job reports on its stdout (one line each), whether or not the store has them yet."""
    logs = list((out / "submitit").glob("*_0_log.out"))
    return sum(len(re.findall(r"^epoch \d+ of ", p.read_text(), re.M)) for p in logs)


@pytest.mark.slow
def test_a_database_restart_mid_run_loses_and_duplicates_nothing(tmp_path, private_pg):
    spec, out = tmp_path / "outage.yaml", tmp_path / "out"
    spec.write_text(tiny_spec("outage", EPOCHS))
    launch = subprocess.Popen([sys.executable, "-m", "harness", "run", spec, "--output", out, "--db", private_pg.url,
                               "--executor", "local"], cwd=REPO, env=harness_env(), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: (r := the_run(private_pg.url)) is not None and r.epoch is not None, 180,
                 "the first epoch to be stored")
        private_pg.stop()
        down_at, stored_before = time.monotonic(), epoch_lines(out)
        time.sleep(OUTAGE_S)
        assert launch.poll() is None, "the launch exited while the store was out of reach"
        trained_meanwhile = epoch_lines(out) - stored_before
        private_pg.start()
        up_after = time.monotonic() - down_at
        text, _ = launch.communicate(timeout=600)
    finally:
        if launch.poll() is None:
            os.killpg(launch.pid, 9)
    assert launch.returncode == 0, text
    assert "1 trained now" in text and "FAILED" not in text and "Traceback" not in text, text
    assert "out of reach" in text and "answers again" in text, text  # the launch said what it waited for
    assert up_after >= OUTAGE_S and trained_meanwhile >= 1, (up_after, trained_meanwhile)

    with open_store(private_pg.url, create=False) as store:
        (record,) = store.runs()
        rows = store.metrics([record.hash])
    assert record.status == "completed", (record.status, record.error)
    keys = [(epoch, name) for _, epoch, name, _ in rows]
    assert len(keys) == len(set(keys))  # nothing twice
    assert {epoch for epoch, _ in keys} == set(range(EPOCHS))  # nothing lost
    names = {name for epoch, name in keys if epoch == 0}
    assert all({name for e, name in keys if e == epoch} == names for epoch in range(EPOCHS))
    # the epochs trained during the outage were stored afterwards, with the metrics the job printed for them
    job_log = next((out / "submitit").glob("*_0_log.out")).read_text()
    printed = {int(m[0]): float(m[1]) for m in re.findall(r"^epoch (\d+) of \d+  train_loss (\S+)", job_log, re.M)}
    stored_loss = {epoch: value for _, epoch, name, value in rows if name == "train_loss"}
    assert printed.keys() == stored_loss.keys() and all(abs(printed[e] - stored_loss[e]) < 1e-4 for e in printed)
    job_err = "".join(p.read_text() for p in (out / "submitit").glob("*_0_log.err"))
    assert "training goes on" in job_err, job_err[-3000:]
