"""Faults during a run: a full disk and a store that cannot take the news end the run `failed` with the cause."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import pytest

from harness.launch import LaunchOptions, launch
from harness.spec import expand, load_spec
from harness.store import open_store
from tests.tiny_spec import REPO, harness_env as env, tiny_spec

SPEC = tiny_spec("faults", epochs=2)


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".tmp" in p.name]


def test_a_checkpoint_that_cannot_be_saved_fails_the_run_with_the_cause(tmp_path, monkeypatch):
    """The fault injected where the disk fills up: the checkpoint's write. The debug executor trains in this
    process, so the injected save is the one the trainer calls."""
    import torch

    real_save = torch.save

    def save_half_then_fail(obj, f, *args, **kwargs):  # type: ignore[no-untyped-def]
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
def small_disk(tmp_path):  # type: ignore[no-untyped-def]
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
    assert record.status == "failed" and "No space left on device" in record.error
    assert leftovers(small_disk) == []
    # the next launch tries again (and, the disk still full, fails again the same way)
    again = subprocess.run([sys.executable, "-m", "harness", "run", str(spec), "--output", str(small_disk),
                            "--db", db_url, "--executor", "local"],
                           cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 1 and "1 trained now" in again.stdout, again.stdout + again.stderr
