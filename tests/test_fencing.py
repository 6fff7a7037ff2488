"""A claim is a fence, with real processes: a launch frozen past its lease (a laptop lid, SIGSTOP) is taken over by
a launch on another machine, and once it wakes it changes no stored byte of the run nor any of its files.

"Another machine" is a process in its own UTS namespace with its own host name (`unshare --uts`, root only), so
that it judges the frozen launch by its lease, as a second machine sharing the store would, and not by its
process, which this machine can see is still there.
"""

from __future__ import annotations

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
    """The run's record (every column), metrics, predictions, and every file of its folder, byte for byte (but
    for a temporary file that the frozen launch may have been writing when it was stopped)."""
    with open_store(db, create=False) as store:
        (record,) = store.runs()
        predictions = {name: (a.dtype.str, a.shape, a.tobytes()) for name, a in store.predictions(record.hash).items()}
        metrics = store.metrics([record.hash])
    files = {p.name: p.read_bytes() for p in sorted(run_dir.iterdir()) if ".tmp-" not in p.name}
    return {"record": record, "metrics": metrics, "predictions": predictions, "files": files}


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
        assert sorted(left["files"]) == ["checkpoint.pt", "model.pt"], sorted(left["files"])
        assert {e for _, e, _, _ in left["metrics"]} == set(range(EPOCHS)) and left["predictions"]
    finally:
        os.killpg(first.pid, signal.SIGCONT)
    first_out, _ = first.communicate(timeout=240)

    assert everything_stored(db, run_dir) == left
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint.pt", "model.pt"]  # no temporary file left
    assert first.returncode == 0, first_out
    assert f"{running.hash[:10]}  taken over by another launch" in first_out, first_out
    assert "FAILED" not in first_out and "Traceback" not in first_out, first_out
    assert "0 trained now" in first_out and "1 taken over by another launch, 0 failed" in first_out, first_out
