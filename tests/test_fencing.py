"""A claim is a fence, with real processes: a launch frozen past its lease (a laptop lid, SIGSTOP) is taken over by
a launch on another machine, and once it wakes it changes no stored byte of the run nor any of its files.

"Another machine" is a process in its own UTS namespace with its own host name (`unshare --uts`, root only), so
that it judges the frozen launch by its lease, as a second machine sharing the store would, and not by its
process, which this machine can see is still there.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from harness import paths
from harness.store import open_store
from tests.freeze import freeze
from tests.test_lifecycle import wait_for
from tests.tiny_spec import REPO, harness_env, tiny_spec

# two launches racing for runs, in processes: the full suite's, not the fast lane's
pytestmark = pytest.mark.slow

# seconds of the frozen launch's lease: long enough for a loaded machine to beat every tenth of it
LEASE_S = "4"
EPOCHS = 12


def other_machine() -> list[str]:
    """The command prefix that runs a process as if on another machine (its own host name)."""
    check = subprocess.run(["unshare", "--uts", "true"], capture_output=True)
    if check.returncode != 0:
        pytest.skip(f"a second host name needs `unshare --uts` (root): {check.stderr.decode().strip()}")
    return ["unshare", "--uts", "sh", "-c", 'hostname harness-test-other && exec "$@"', "sh"]


def harness(*args: object, prefix: tuple[str, ...] = (), **env: str) -> subprocess.Popen:
    return subprocess.Popen([*prefix, sys.executable, "-m", "harness", *map(str, args)], cwd=REPO,
                            env=harness_env(**env), text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)


def the_run(db: str):  # type: ignore[no-untyped-def]
    from harness.store import StoreError

    try:
        with open_store(db, create=False) as store:
            runs = store.runs()
            return runs[0] if runs else None
    except StoreError:  # not created yet
        return None


def everything_stored(db: str, run_dir: Path) -> dict:
    """The run's record (every column), metrics, predictions, published files, and every file its records name,
    byte for byte."""
    with open_store(db, create=False) as store:
        (record,) = store.runs()
        predictions = {name: (a.dtype.str, a.shape, a.tobytes()) for name, a in store.predictions(record.hash).items()}
        metrics = store.metrics([record.hash])
        published = store.run_files(record.hash)
    files = {f.name: (run_dir / f.name).read_bytes() for f in published.values()}
    return {"record": record, "metrics": metrics, "predictions": predictions, "published": published, "files": files}


def only_published(run_dir: Path, left: dict) -> None:
    """The run's folder holds exactly the files its records name, each with the SHA-256 it was published with."""
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(left["files"])
    for role, file in left["published"].items():
        assert hashlib.sha256(left["files"][file.name]).hexdigest() == file.sha256, role


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_launch_frozen_past_its_lease_changes_nothing_that_the_launch_taking_over_left(tmp_path, backend,
                                                                                          request):
    elsewhere = other_machine()
    spec, out = tmp_path / "stale.yaml", tmp_path / "out"
    spec.write_text(tiny_spec("stale", EPOCHS))
    db = request.getfixturevalue("pg_url") if backend == "postgresql" else f"sqlite:///{out / 'harness.db'}"
    first = harness("run", spec, "--output", out, "--db", db, "--executor", "local", HARNESS_LEASE_S=LEASE_S)
    try:
        running = wait_for(lambda: (r := the_run(db)) is not None and (r.epoch or 0) >= 1 and r, 180,
                           "the first launch to train an epoch or two")
        assert running.status == "running", running.status
        freeze(first, db)
        lapsed = lambda: (r := the_run(db)).lease_until < datetime.now(timezone.utc) and r  # noqa: E731
        wait_for(lapsed, 60, "the frozen launch's lease to lapse")

        second = harness("run", spec, "--output", out, "--db", db, "--executor", "local", prefix=tuple(elsewhere))
        second_out, _ = second.communicate(timeout=240)
        assert second.returncode == 0, second_out
        assert "its last attempt ended: no word from its job or launcher on" in second_out, second_out
        assert "1 trained now" in second_out and "completed, top-1" in second_out, second_out
        run_dir = paths.run_dir(out, running.hash)
        left = everything_stored(db, run_dir)
        assert left["record"].status == "completed" and left["record"].owner != running.owner
        assert sorted(left["published"]) == ["checkpoint", "model"], left["published"]
        assert all(running.owner not in f.name and left["record"].owner in f.name for f in left["published"].values())
        assert {e for _, e, _, _ in left["metrics"]} == set(range(EPOCHS)) and left["predictions"]
    finally:
        os.killpg(first.pid, signal.SIGCONT)
    first_out, _ = first.communicate(timeout=240)

    assert everything_stored(db, run_dir) == left
    only_published(run_dir, left)  # no temporary file left
    assert first.returncode == 0, first_out
    assert f"{running.hash[:10]}  taken over by another launch" in first_out, first_out
    assert "FAILED" not in first_out and "Traceback" not in first_out, first_out
    assert "0 trained now" in first_out and "1 taken over by another launch, 0 failed" in first_out, first_out


@pytest.mark.slow
@pytest.mark.parametrize("role", ["checkpoint", "model"])
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_job_frozen_between_writing_a_file_and_publishing_it_changes_nothing_the_launch_taking_over_left(
        tmp_path, backend, role, request):
    """The window of every check-then-rename: the job has written its checkpoint (or its final weights) and not
    yet published it when it is frozen (a test hook holds it there: no timing race), past its lease; another
    launch takes the run over and completes it. Woken, the job publishes nothing, reads nothing of the new
    owner's, and leaves no file behind."""
    from harness.launch.job import PUBLISH_BARRIER

    elsewhere = other_machine()
    epochs = 3
    spec, out, barrier = tmp_path / "window.yaml", tmp_path / "out", tmp_path / "barrier"
    spec.write_text(tiny_spec("window", epochs))
    barrier.mkdir()
    (barrier / f"hold-{role}").touch()
    db = request.getfixturevalue("pg_url") if backend == "postgresql" else f"sqlite:///{out / 'harness.db'}"
    first = harness("run", spec, "--output", out, "--db", db, "--executor", "local", HARNESS_LEASE_S=LEASE_S,
                    **{PUBLISH_BARRIER: str(barrier)})
    try:
        wait_for(lambda: (barrier / f"reached-{role}").exists() or first.poll() is not None, 300,
                 f"the job to write its {role} file and wait before publishing it")
        assert first.poll() is None, first.communicate()[0]
        running = the_run(db)
        run_dir = paths.run_dir(out, running.hash)
        unpublished = [p for p in run_dir.iterdir() if p.name.startswith(f"{role}.{running.owner}")]
        assert unpublished, sorted(p.name for p in run_dir.iterdir())
        freeze(first, db)
        lapsed = lambda: (r := the_run(db)).lease_until < datetime.now(timezone.utc) and r  # noqa: E731
        wait_for(lapsed, 60, "the frozen launch's lease to lapse")

        second = harness("run", spec, "--output", out, "--db", db, "--executor", "local", prefix=tuple(elsewhere))
        second_out, _ = second.communicate(timeout=300)
        assert second.returncode == 0, second_out
        assert "1 trained now" in second_out and "completed, top-1" in second_out, second_out
        left = everything_stored(db, run_dir)
        assert left["record"].status == "completed" and left["record"].owner != running.owner
        assert sorted(left["published"]) == ["checkpoint", "model"], left["published"]
        # the weights are the new owner's; so is the checkpoint where it trained epochs (frozen at its first
        # checkpoint, the job had published none), else the last one the frozen job published while it held the run
        checkpoint_by = left["record"].owner if role == "checkpoint" else running.owner
        assert left["record"].owner in left["published"]["model"].name, left["published"]
        assert left["published"]["checkpoint"].name == f"checkpoint.{checkpoint_by}.e{epochs - 1}.pt", left["published"]
        assert {e for _, e, _, _ in left["metrics"]} == set(range(epochs)) and left["predictions"]
        only_published(run_dir, left)  # the new owner removed the frozen job's unpublished file
    finally:
        (barrier / f"hold-{role}").unlink(missing_ok=True)
        os.killpg(first.pid, signal.SIGCONT)
    first_out, _ = first.communicate(timeout=300)

    assert everything_stored(db, run_dir) == left
    only_published(run_dir, left)
    assert f"{running.hash[:10]}  taken over by another launch" in first_out, first_out
    assert "Traceback" not in first_out, first_out
