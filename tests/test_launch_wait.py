"""A launch that waits on a run another launch trains: it sleeps while it waits, and takes the run over when
that launch dies (harness/launch/local.py, plan.py's dependency rule, `Store.take_over`).

Launch A trains a teacher; launch B, started on the same store and output folder, needs that teacher for its
student. A's processes are frozen (SIGSTOP, outside a SQLite write transaction) while B waits, so the teacher
stays in flight under A for as long as the test measures, however slowly a loaded machine trains; then A and
its job are killed (kill -9 to the process group, as a crash or a lost terminal would).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.store import open_store
from tests.freeze import freeze
from tests.test_lifecycle import finish, wait_for
from tests.tiny_spec import REPO, harness_env as env, tiny_spec

# launches that wait on each other's jobs, in processes: the full suite's, not the fast lane's
pytestmark = pytest.mark.slow

STUDENT = """  student:
    set: {model.name: deit_tiny_patch4_32, model.distillation_token: true, schedule.epochs: 1,
          distillation: {kind: hard, teacher: {model: resnet_tiny_32, run: teacher}}}
"""


def specs(tmp_path: Path) -> tuple[Path, Path]:
    """A's spec (the teacher alone) and B's (the same teacher, same hash, and a student that needs it)."""
    paths = []
    for name, student in (("wait-a", ""), ("wait-b", STUDENT)):
        path = tmp_path / f"{name}.yaml"
        path.write_text(tiny_spec(name, epochs=15).replace("seeds: [0]", "variants:\n  teacher:\n    set: {}\n"
                                                           + student))
        paths.append(path)
    return paths[0], paths[1]


def harness(*args: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "harness", *map(str, args)], cwd=REPO, env=env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def records(db: str) -> dict[str, object]:
    from harness.store import StoreError

    try:
        with open_store(db, create=False) as store:
            return {r.variant: r for r in store.runs()}
    except StoreError:  # not created yet, or being created this moment
        return {}


def cpu_share(pid: int, window_s: float) -> float:
    """The share of one core that process `pid` used over `window_s` seconds of wall time."""
    import psutil

    process = psutil.Process(pid)
    before, start = sum(process.cpu_times()[:2]), time.monotonic()
    time.sleep(window_s)
    return (sum(process.cpu_times()[:2]) - before) / (time.monotonic() - start)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_launch_waiting_on_another_launchs_teacher_sleeps_and_takes_it_over_when_that_launch_dies(
        tmp_path, backend, request):
    spec_a, spec_b = specs(tmp_path)
    out = tmp_path / "out"
    db = request.getfixturevalue("pg_url") if backend == "postgresql" else f"sqlite:///{out / 'harness.db'}"
    a = harness("run", spec_a, "--output", out, "--db", db, "--executor", "local")
    b = None
    try:
        wait_for(lambda: getattr(records(db).get("teacher"), "epoch", None) is not None, 120,
                 "launch A to train its teacher for an epoch")
        freeze(a, db)  # A, its job and its training process: the teacher stays in flight
        teacher = records(db)["teacher"]
        assert teacher.status == "running", teacher.status
        b = harness("run", spec_b, "--output", out, "--db", db, "--executor", "local")
        wait_for(lambda: getattr(records(db).get("student"), "owner_pid", None) == b.pid, 120,
                 "launch B to claim its student")
        time.sleep(2.0)  # past B's last start-up work: from here on it only waits
        share = cpu_share(b.pid, window_s=8.0)
        print(f"launch B, waiting on launch A's teacher: {share:.1%} of a core")
        now = records(db)
        assert now["teacher"].status == "running" and now["teacher"].owner == teacher.owner  # B waited all along
        assert now["student"].status == "queued", now["student"].status
        assert share < 0.15, f"launch B used {share:.0%} of a core while it waited"

        os.killpg(a.pid, signal.SIGKILL)  # A and its teacher's job die; SIGKILL ends stopped processes too
        a.wait()
        text = finish(b, timeout=240)
    finally:
        for process in (a, b):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    assert b.returncode == 0, text
    assert "taken over by this launch" in text and "is gone" in text, text
    ended = records(db)
    assert {v: r.status for v, r in ended.items()} == {"teacher": "completed", "student": "completed"}, text
    # B trained the teacher itself, under the claim it holds its student by
    assert ended["teacher"].owner == ended["student"].owner != teacher.owner
    assert "2 trained now" in text and "0 failed" in text, text
