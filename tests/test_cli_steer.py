"""`harness status`, `logs`, `cancel` and `retry` through the command line (typer's CliRunner) on a real SQLite
store: what each prints and its exit code."""

from __future__ import annotations

import psutil
import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.spec import expand, load_spec
from harness.store import open_store
from tests.runstate import drive
from tests.test_launch_control import here_owner, registered, sleeper
from tests.tiny_spec import tiny_spec
from tests.test_spec import write

runner = CliRunner()

# one run that trains in a second or two
SPEC = tiny_spec("lifecycle")


def harness(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def row_of(table: str, run_hash: str) -> str:
    """The table's row of the run, its words joined by single spaces (with the lines its last column wrapped to)."""
    lines = table.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(run_hash[:10]))
    end = next((i for i in range(at + 1, len(lines)) if not lines[i].startswith(" ")), len(lines))
    return " ".join(" ".join(lines[at:end]).split())


def test_status_shows_each_runs_state_and_says_a_run_whose_local_job_died_is_dead_without_failing_it(
        sqlite_store, sqlite_url, planned):
    """A read: the run stays as stored (only a launch gives it up), its row says why it is dead."""
    done, died, waiting = registered(sqlite_store, planned)
    drive(sqlite_store, done.hash, "completed")
    job = sleeper()
    owner = here_owner()
    assert sqlite_store.claim(died.hash, owner)
    assert sqlite_store.record_submission(died.hash, owner.token, f"local:{job.pid}",
                                          job_started=psutil.Process(job.pid).create_time())
    job.kill()
    job.wait()

    result = harness("status", "ablation", "--db", sqlite_url)

    assert result.exit_code == 0, result.output
    assert result.stdout.split()[:2] == ["run", "status"]
    assert row_of(result.stdout, done.hash).split()[1] == "completed"
    assert row_of(result.stdout, waiting.hash).split()[1] == "pending"
    row = row_of(result.stdout, died.hash)
    assert row.split()[1:3] == ["submitted", "-"] and f"local:{job.pid}" in row
    assert f"its job's process {job.pid} on {owner.host} is gone: the next launch gives it up" in row, row
    assert sqlite_store.get_run(died.hash).status == "submitted"



def test_status_numbers_epochs_from_0_as_the_store_and_results_do(sqlite_store, sqlite_url, planned):
    import harness.results as results
    from tests.runstate import TEST_OWNER

    run = planned(1)[0]
    sqlite_store.register_experiment("ablation", "", None)
    sqlite_store.register_runs("ablation", [run])
    drive(sqlite_store, run.hash, "running")
    for epoch in (0, 1):
        sqlite_store.log_epoch(run.hash, epoch, {"top1": 40.0 + epoch}, token=TEST_OWNER.token)
    assert results.runs(sqlite_store)["epoch"].iloc[0] == 1
    row = row_of(harness("status", "ablation", "--db", sqlite_url).stdout, run.hash)
    assert row.split()[1:5] == ["running", "1", "of", str(run.config.schedule.epochs)], row

@pytest.mark.slow  # its job process imports torch: about 10 s
def test_logs_print_the_epoch_lines_of_a_run_that_trained(tmp_path, importable_by_jobs):
    out = tmp_path / "out"
    trained = harness("run", write(tmp_path, SPEC), "--executor", "local", "--threads", 1, "--output", out)
    assert trained.exit_code == 0, trained.output
    run = expand(load_spec(write(tmp_path, SPEC)))[0]

    result = harness("logs", run.hash[:10], "--output", out)

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"==> {out / 'submitit'}") and "_log.out <==" in result.stdout
    epoch = [line for line in result.stdout.splitlines() if line.startswith("epoch ")]
    assert len(epoch) == 1 and epoch[0].startswith("epoch 0 of 1  train_loss ") and " top1 " in epoch[0], result.stdout
    unknown = harness("logs", "zzzzzz", "--output", out)
    assert unknown.exit_code == 2 and unknown.stderr == "error: no spec or run matches 'zzzzzz'\n"


def test_cancel_a_pending_run(sqlite_store, sqlite_url, planned):
    runs = registered(sqlite_store, planned)

    result = harness("cancel", runs[0].hash[:10], "--db", sqlite_url)

    assert result.exit_code == 0, result.output
    assert result.stdout == f"cancelled 1 run\n  {runs[0].hash[:10]}  no job was submitted yet\n"
    assert [sqlite_store.get_run(r.hash).status for r in runs] == ["cancelled", "pending", "pending"]
    assert sqlite_store.get_run(runs[0].hash).error == "cancelled by the user"
    again = harness("cancel", runs[0].hash[:10], "--db", sqlite_url)
    assert again.exit_code == 0 and again.stdout == "cancelled 0 runs\n"
    unknown = harness("cancel", "zzzzzz", "--db", sqlite_url)
    assert unknown.exit_code == 2 and unknown.stderr == "error: no spec or run matches 'zzzzzz'\n"


def registered_from_spec(tmp_path, url: str, text: str):
    loaded = load_spec(write(tmp_path, text))
    store = open_store(url)
    store.register_experiment(loaded.spec.name, loaded.text, loaded.path)
    store.register_runs(loaded.spec.name, expand(loaded))
    return store, expand(loaded)[0]


def test_retry_failed_resubmits_a_failed_run_that_then_completes(tmp_path, sqlite_url):
    store, run = registered_from_spec(tmp_path, sqlite_url, SPEC)
    drive(store, run.hash, "failed", error="it failed once")
    args = ("--executor", "debug", "--threads", 1, "--db", sqlite_url, "--output", tmp_path / "out")
    refused = harness("retry", *args)
    assert refused.exit_code == 2 and "--failed" in refused.stderr and store.get_run(run.hash).status == "failed"

    result = harness("retry", "--failed", *args)

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "1 resubmitted, 0 in flight elsewhere, 0 failed again"
    assert f"{run.short}  completed, top-1 " in result.stdout, result.stdout
    record = store.get_run(run.hash)
    assert record.status == "completed" and record.error is None and 0 <= record.final["top1"] <= 100
    nothing = harness("retry", "--failed", *args)
    assert nothing.exit_code == 0 and nothing.stdout == "nothing to retry\n"


def test_retry_of_a_run_that_fails_again_exits_1_naming_it(tmp_path, sqlite_url):
    # a batch larger than the 64 training images: the run fails as its job builds its data
    store, run = registered_from_spec(tmp_path, sqlite_url, SPEC.replace("batch_size: 32", "batch_size: 128"))
    drive(store, run.hash, "failed", error="it failed once")

    result = harness("retry", "--failed", "--executor", "debug", "--threads", 1, "--db", sqlite_url,
                     "--output", tmp_path / "out")

    assert result.exit_code == 1, result.output
    assert result.stdout.splitlines()[-1] == "1 resubmitted, 0 in flight elsewhere, 1 failed again"
    assert result.stderr.startswith(f"failed: {run.short} {run.describe()}: ValueError: batch_size 128 is larger")
    assert store.get_run(run.hash).status == "failed"


# a teacher and its student, and a run whose data folder is gone: each is a problem `harness run` refuses to submit
CHECKED_SPEC = SPEC + """variants:
  teacher: {}
  student: {set: {distillation: {kind: hard, teacher: {run: teacher}}}}
  folder: {set: {data: {name: imagefolder, root: MISSING/images}}}
"""


@pytest.mark.parametrize("executor", ["local", "slurm"])
def test_retry_makes_the_plan_time_checks_run_makes(tmp_path, sqlite_url, monkeypatch, executor):
    spec = write(tmp_path, CHECKED_SPEC.replace("MISSING", str(tmp_path / "gone")))
    loaded = load_spec(spec)
    runs = {r.variant: r for r in expand(loaded)}
    store = open_store(sqlite_url)
    store.register_experiment(loaded.spec.name, loaded.text, loaded.path)
    store.register_runs(loaded.spec.name, list(runs.values()))
    drive(store, runs["teacher"].hash, "completed")  # whose weights file was never written: gone
    drive(store, runs["student"].hash, "failed", error="it failed once")
    drive(store, runs["folder"].hash, "cancelled")
    monkeypatch.setenv("PATH", str(tmp_path / "no-slurm-here"))  # no sbatch, no srun
    args = ("--executor", executor, "--threads", 1, "--db", sqlite_url, "--output", tmp_path / "out")

    ran = harness("run", spec, *args)
    retried = harness("retry", "--failed", *args)

    assert ran.exit_code == retried.exit_code == 2, retried.output
    problems = sorted(retried.stderr.splitlines())
    assert problems == sorted(ran.stderr.splitlines()), (ran.stderr, retried.stderr)
    assert any("data.root: no folder" in line for line in problems)
    assert any("distillation.teacher.run:" in line and "published no model weights" in line for line in problems)
    assert any("no `sbatch` command here" in line for line in problems) == (executor == "slurm")
    assert {r.hash: r.status for r in store.runs()} == {
        runs["teacher"].hash: "completed", runs["student"].hash: "failed", runs["folder"].hash: "cancelled"}
    assert not (tmp_path / "out").exists()


def test_a_retry_names_the_stored_spec_of_a_bad_slurm_section(tmp_path, sqlite_url):
    store, run = registered_from_spec(tmp_path, sqlite_url, SPEC + "slurm: {partitionn: gpu}\n")
    drive(store, run.hash, "failed", error="it failed once")
    result = harness("retry", "--failed", "--executor", "local", "--db", sqlite_url, "--output", tmp_path / "out")
    assert result.exit_code == 2
    assert result.stderr == "error: spec 'lifecycle' as last launched: slurm.partitionn: unknown key; allowed keys: " \
                            "partition, " + result.stderr.split("partition, ", 1)[1]


def every_row(sqlite_url: str) -> list[str]:
    """Every row of a SQLite store as SQL text (the file's own bytes change when a reader checkpoints its WAL)."""
    import sqlite3

    connection = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
    try:
        return list(connection.iterdump())
    finally:
        connection.close()


def test_status_from_another_pid_namespace_leaves_a_healthy_running_run_running_and_writes_nothing(
        sqlite_store, sqlite_url, planned, tmp_path):
    """A container sharing the host name (`unshare -p`, root only) cannot see the job's pid: the job is unknown
    there, judged by its lease, which holds; and `status`, a read, writes no byte of the store either way."""
    import subprocess
    import sys

    from tests.tiny_spec import REPO, harness_env

    check = subprocess.run(["unshare", "-p", "-f", "--mount-proc", "true"], capture_output=True)
    if check.returncode != 0:
        pytest.skip(f"another PID namespace needs `unshare -p` (root): {check.stderr.decode().strip()}")
    run = registered(sqlite_store, planned)[0]
    job = sleeper()
    try:
        owner = here_owner()
        assert sqlite_store.claim(run.hash, owner)
        assert sqlite_store.record_submission(run.hash, owner.token, f"local:{job.pid}",
                                              job_started=psutil.Process(job.pid).create_time())
        assert sqlite_store.mark_started(run.hash, owner.token, owner.host, {})
        before = every_row(sqlite_url)

        shown = subprocess.run(["unshare", "-p", "-f", "--mount-proc", sys.executable, "-m", "harness", "status",
                                "--db", sqlite_url], cwd=REPO, env=harness_env(), capture_output=True, text=True,
                               timeout=300)

        assert shown.returncode == 0, shown.stderr
        row = row_of(shown.stdout, run.hash)
        assert row.split()[1] == "running" and "gone" not in row, row
        assert sqlite_store.get_run(run.hash).status == "running"
        assert every_row(sqlite_url) == before
    finally:
        job.kill()
        job.wait()
