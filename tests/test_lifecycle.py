"""The run lifecycle with real processes: `harness run` launches racing, crashing, interrupted, on a full disk.

Each test drives the `harness` command itself (a subprocess, as a user would) with the local executor and
counts the jobs it really started (submitit's `*_submitted.pkl`, one per submission).
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
from tests.tiny_spec import REPO, harness_env as env, tiny_spec

# runs through their states in real job processes: the full suite's, not the fast lane's
pytestmark = pytest.mark.slow


def spec(tmp_path: Path, epochs: int = 1) -> Path:
    path = tmp_path / "lifecycle.yaml"
    path.write_text(tiny_spec("lifecycle", epochs, seeds=(0, 1, 2)))
    return path


def harness(*args: object) -> subprocess.Popen:
    """`harness ARGS` in its own process group (so a test can kill it and its jobs as a crash would)."""
    return subprocess.Popen([sys.executable, "-m", "harness", *map(str, args)], cwd=REPO, env=env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def finish(process: subprocess.Popen, timeout: float = 240) -> str:
    out, _ = process.communicate(timeout=timeout)
    return out


def jobs_started(out: Path) -> int:
    return len(list((out / "submitit").glob("*_submitted.pkl")))


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def statuses(out: Path, db: str | None = None) -> dict[str, str]:
    with open_store(db or f"sqlite:///{out / 'harness.db'}", create=False) as store:
        return {r.hash: r.status for r in store.runs()}


def started_runs(out: Path) -> int:
    from harness.store import StoreError

    try:
        return sum(s in ("running", "completed") for s in statuses(out).values())
    except StoreError:  # not created yet, or being created this moment
        return 0


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_launches_at_once_train_every_run_exactly_once(tmp_path, backend, request):
    path, out = spec(tmp_path), tmp_path / "out"
    db = request.getfixturevalue("pg_url") if backend == "postgresql" else f"sqlite:///{out / 'harness.db'}"
    launches = [harness("run", path, "--output", out, "--db", db, "--executor", "local", "--max-parallel", 2)
                for _ in range(2)]
    outputs = [finish(p) for p in launches]
    assert [p.returncode for p in launches] == [0, 0], outputs
    assert jobs_started(out) == 3, outputs
    assert set(statuses(out, db).values()) == {"completed"}
    # whatever one launch trained, the other reported as in flight (or found done)
    assert "3 runs" in outputs[0] and "3 runs" in outputs[1]


@pytest.mark.slow
def test_a_second_launch_mid_run_trains_nothing_twice(tmp_path):
    path, out = spec(tmp_path, epochs=2), tmp_path / "out"
    first = harness("run", path, "--output", out, "--executor", "local")
    wait_for(lambda: started_runs(out) >= 1, 120, "the first launch to start training")
    second = harness("run", path, "--output", out, "--executor", "local")
    second_out = finish(second)
    first_out = finish(first)
    assert first.returncode == 0 and second.returncode == 0, (first_out, second_out)
    assert "in flight elsewhere" in second_out and "0 trained now" in second_out, second_out
    assert jobs_started(out) == 3
    assert set(statuses(out).values()) == {"completed"}


@pytest.mark.slow
def test_a_crashed_launch_is_recovered_by_the_next_one_within_seconds(tmp_path):
    path, out = spec(tmp_path, epochs=30), tmp_path / "out"
    first = harness("run", path, "--output", out, "--executor", "local", "--max-parallel", 2)
    wait_for(lambda: started_runs(out) >= 1, 120, "the launch to start training")
    os.killpg(first.pid, signal.SIGKILL)  # the launcher, its job controllers and their tasks
    first.wait()
    start = time.monotonic()
    plan = subprocess.run([sys.executable, "-m", "harness", "run", path, "--output", out, "--dry-run"],
                          cwd=REPO, env=env(), capture_output=True, text=True, timeout=60)
    # the dead jobs are seen dead at once: every run is to run again, none waits out a lease
    lines = plan.stdout.strip().splitlines()
    assert plan.returncode == 0 and all("  to run  " in line for line in lines[:-1]) and len(lines) == 4, plan.stdout
    assert time.monotonic() - start < 20
    before = statuses(out)
    again = subprocess.run([sys.executable, "-m", "harness", "status", "--output", out],
                           cwd=REPO, env=env(), capture_output=True, text=True, timeout=60)
    # status sees the dead jobs and says so, but a read changes no run: the next launch gives them up
    assert again.returncode == 0 and "is gone" in again.stdout, again.stdout
    assert statuses(out) == before


INTERRUPTIONS = {
    # `kill PID`: SIGTERM to the launcher alone
    "SIGTERM": lambda launch: launch.send_signal(signal.SIGTERM),
    # Ctrl-C twice in a terminal: SIGINT to the whole foreground group, the second during the cleanup
    "Ctrl-C twice": lambda launch: [os.killpg(launch.pid, signal.SIGINT), time.sleep(0.3),
                                    os.killpg(launch.pid, signal.SIGINT)],
}


@pytest.mark.slow
@pytest.mark.parametrize("how", sorted(INTERRUPTIONS))
def test_an_interrupted_launch_ends_its_jobs_and_says_what_became_of_each_run(tmp_path, how):
    path, out = spec(tmp_path, epochs=30), tmp_path / "out"
    # one run at a time: one is training when the launch is interrupted, two wait their turn
    launch = harness("run", path, "--output", out, "--executor", "local", "--max-parallel", 1)
    wait_for(lambda: started_runs(out) >= 1, 120, "the launch to start training")
    INTERRUPTIONS[how](launch)
    text = finish(launch, timeout=60)
    assert launch.returncode == 130, text
    assert "interrupted by SIG" in text and "Traceback" not in text, text
    assert text.count("cancelled: ") == 1 and text.count("not started: pending again") == 2, text
    found = sorted(statuses(out).values())
    assert found == ["cancelled", "pending", "pending"], found
    # nothing of the launch is left running
    time.sleep(1)
    leftover = subprocess.run(["pgrep", "-f", f"submitit.*{out}"], capture_output=True, text=True)
    assert leftover.stdout.strip() == "", leftover.stdout


@pytest.mark.slow
def test_a_job_killed_by_kill_9_fails_its_run_with_that_cause(tmp_path):
    import psutil

    path, out = spec(tmp_path, epochs=30), tmp_path / "out"
    launch = harness("run", path, "--output", out, "--executor", "local")
    wait_for(lambda: started_runs(out) >= 1, 120, "the launch to start training")
    with open_store(f"sqlite:///{out / 'harness.db'}", create=False) as store:
        running = next(r for r in store.runs() if r.status == "running")
    controller = psutil.Process(int(running.job_id.split(":")[1]))
    for task in controller.children(recursive=True):
        task.kill()  # the training process only, as the out-of-memory killer would
    text = finish(launch)
    assert launch.returncode == 1, text
    with open_store(f"sqlite:///{out / 'harness.db'}", create=False) as store:
        record = store.get_run(running.hash)
    assert record.status == "failed" and "killed" in record.error, record.error
    assert "submitit" not in record.error.lower().split("killed")[0], record.error


@pytest.mark.slow
def test_a_run_cancelled_while_its_launch_works_through_the_queue_is_never_trained(tmp_path):
    path, out = spec(tmp_path, epochs=3), tmp_path / "out"
    launch = harness("run", path, "--output", out, "--executor", "local")
    wait_for(lambda: started_runs(out) >= 1, 120, "the launch to start training")
    waiting = wait_for(lambda: [h for h, s in statuses(out).items() if s == "queued"], 30, "runs queued behind it")
    cancel = subprocess.run([sys.executable, "-m", "harness", "cancel", waiting[-1][:12], "--output", out],
                            cwd=REPO, env=env(), capture_output=True, text=True, timeout=60)
    assert cancel.returncode == 0 and "no job was submitted yet" in cancel.stdout, cancel.stdout + cancel.stderr
    text = finish(launch)
    assert launch.returncode == 0, text
    assert "not started: it is cancelled now" in text, text
    assert jobs_started(out) == 2
    assert sorted(statuses(out).values()) == ["cancelled", "completed", "completed"]
