"""Faults during a run: a full disk and a store that cannot take the news end the run `failed` with the cause."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import pytest

from harness.launch import LaunchOptions, launch
from harness.launch.logs import last_exception_in
from harness.spec import expand, load_spec
from harness.store import open_store
from tests.tiny_spec import REPO, harness_env as env, tiny_spec

# kills and restarts real training jobs: the full suite's, not the fast lane's
pytestmark = pytest.mark.slow

SPEC = tiny_spec("faults", epochs=2)


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".tmp" in p.name]


def test_a_checkpoint_that_cannot_be_saved_fails_the_run_with_the_cause(tmp_path, monkeypatch):
    """The fault injected where the disk fills up: the checkpoint's write. The debug executor trains in this
    process, so the injected save is the one the trainer calls."""
    import torch

    real_save = torch.save

    def save_half_then_fail(obj, f, *args, **kwargs):
        if ".tmp" in str(f) and "checkpoint" in str(f):
            Path(f).write_bytes(b"\0" * 4096)  # what a filling disk leaves behind
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_half_then_fail)
    (tmp_path / "faults.yaml").write_text(SPEC)
    loaded = load_spec(tmp_path / "faults.yaml")
    db_url = f"sqlite:///{tmp_path / 'store.db'}"
    store = open_store(db_url)
    result = launch(loaded, expand(loaded), store, db_url, LaunchOptions(executor="debug", output=tmp_path / "out"),
                    progress=lambda line: None)
    [failure] = result.failures
    record = store.runs()[0]
    assert record.status == "failed" and "No space left on device" in record.error and "checkpoint" in record.error
    assert "No space left on device" in failure.error
    assert leftovers(tmp_path / "out") == []


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MB filesystem: room for the job's logs, not for a checkpoint (about 14 MB here)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here ({done.stderr.strip() or done.returncode}); "
                    "the fault-injection test covers the same path")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.mark.slow
def test_a_full_disk_fails_the_run_with_the_cause_and_leaves_no_temp_file(tmp_path, small_disk):
    spec = tmp_path / "faults.yaml"
    spec.write_text(SPEC)
    db_url = f"sqlite:///{tmp_path / 'store.db'}"
    done = subprocess.run([sys.executable, "-m", "harness", "run", str(spec), "--output", str(small_disk),
                           "--db", db_url, "--executor", "local"],
                          cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "No space left on device" in done.stderr and "Traceback" not in done.stdout, done.stdout + done.stderr
    with open_store(db_url, create=False) as store:
        [record] = store.runs()
    assert record.status == "failed" and record.error.startswith("disk full: ")
    assert "No space left on device" in record.error
    assert leftovers(small_disk) == []
    # the next launch tries again (and, the disk still full, fails again the same way)
    again = subprocess.run([sys.executable, "-m", "harness", "run", str(spec), "--output", str(small_disk),
                            "--db", db_url, "--executor", "local"],
                           cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 1 and "1 trained now" in again.stdout, again.stdout + again.stderr


# what submitit writes to the job's stdout when the disk is full: it cannot save the job's error either, and the
# traceback it then raises cannot be written to stderr (submitit/core/submission.py, process_job)
SUBMITIT_DUMP_FAILED = """\
submitit INFO (2026-11-29 14:27:14,517) - Loading pickle: /out/submitit/6469_submitted.pkl
epoch 1/2  train_loss 2.3279  top1 10.00  lr 3.13e-05  290 img/s  0.2 s
submitit ERROR (2026-11-29 14:27:20,692) - Could not dump error:
[Errno 28] No space left on device

because of [Errno 28] No space left on device
submitit ERROR (2026-11-29 14:27:20,692) - Submitted job triggered an exception
"""


@pytest.mark.parametrize("text", [
    SUBMITIT_DUMP_FAILED,
    "Traceback (most recent call last):\n  ...\nOSError: [Errno 28] No space left on device: '/out/x.tmp'\n",
    "sqlalchemy.exc.OperationalError: (sqlite3.OperationalError) database or disk is full\n",
    "OSError: [Errno 122] Disk quota exceeded\n",
])
def test_every_wording_of_a_full_disk_is_named_disk_full(text):
    found = last_exception_in(text)
    assert found is not None and found.startswith("disk full: "), found


def test_other_failures_are_not_named_disk_full():
    assert last_exception_in("ValueError: bad value\n") == "ValueError: bad value"
    assert last_exception_in("submitit ERROR (x) - Could not dump error:\nboom\n\nbecause of PicklingError: y\n"
                             ) == "boom (submitit could not save it: PicklingError: y)"


@pytest.mark.slow
def test_a_full_disk_holding_the_store_too_is_reported_as_a_full_disk(tmp_path, small_disk):
    """The default layout: the store sits in the output folder, on the disk that fills up. The job can record
    nothing, submitit cannot save its error: the launch still reads the cause from the job's log."""
    spec = tmp_path / "faults.yaml"
    spec.write_text(SPEC)
    done = subprocess.run([sys.executable, "-m", "harness", "run", str(spec), "--output", str(small_disk),
                           "--executor", "local"],
                          cwd=REPO, env={**env(), "HARNESS_DB": ""}, capture_output=True, text=True, timeout=300)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "failed: disk full: " in done.stdout and "killed" not in out and "Traceback" not in out, out
    with open_store(f"sqlite:///{small_disk / 'harness.db'}", create=False) as store:
        [record] = store.runs()
    assert record.status == "failed" and record.error.startswith("disk full: "), record.error
