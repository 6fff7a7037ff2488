"""Watching and steering: liveness, status rows, reaping, logs, cancel and retry through the store."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import psutil
import pytest

from harness.launch import processes
from harness.launch.control import cancel, failed_runs, find_runs, log_text
from harness.launch.liveness import judge, reap
from harness.launch.status import statuses
from harness.states import Owner
from tests.runstate import TEST_OWNER, drive


def registered(store, planned, n=3):
    runs = planned(n)
    store.register_experiment("ablation", "name: ablation\n", "ablation.yaml")
    store.register_runs("ablation", runs)
    return runs


def here_owner() -> Owner:
    me = processes.this_process()
    return Owner(token="launcher-here", host=me.host, pid=me.pid, started=me.started, boot=me.boot, pidns=me.pidns)


def sleeper(seconds: float = 120) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds})"])


def submit_local(store, run_hash: str, process: subprocess.Popen, owner: Owner | None = None, **kwargs) -> Owner:
    """Claim a run for a launcher on this machine and record `process` as its local job."""
    owner = owner or here_owner()
    assert store.claim(run_hash, owner)
    started = kwargs.pop("job_started", psutil.Process(process.pid).create_time())
    assert store.record_submission(run_hash, owner.token, f"local:{process.pid}", job_started=started, **kwargs)
    return owner


def test_status_rows_show_state_epoch_top1_job_and_elapsed(sqlite_store, planned):
    runs = registered(sqlite_store, planned)
    drive(sqlite_store, runs[0].hash, "running", job_id="local:123")
    sqlite_store.log_epoch(runs[0].hash, 0, {"top1": 41.5, "train_loss": 2.0})
    assert sqlite_store.heartbeat(runs[0].hash, TEST_OWNER.token, epoch=0)
    rows = {r.hash: r for r in statuses(sqlite_store, "ablation")}
    row = rows[runs[0].hash]
    assert (row.status, row.epoch, row.epochs, row.top1, row.job_id) == ("running", 0, 300, 41.5, "local:123")
    assert row.elapsed_s is not None and row.elapsed_s >= 0 and row.host == "node1"
    assert rows[runs[1].hash].status == "pending"


def test_status_counts_the_gpus_a_run_holds_and_their_hours():
    from types import SimpleNamespace

    from harness.launch.status import RunStatus, gpus_held

    def record(config, info=None):
        return SimpleNamespace(config=config, info=info or {})

    assert gpus_held(record({"gpus": 8})) == 8  # not started yet: what its config asks for
    assert gpus_held(record({})) == 1
    assert gpus_held(record({"gpus": 8}, {"device": "NVIDIA H100", "world_size": "8"})) == 8
    # device auto on a machine without a GPU, or device cpu: no GPU
    assert gpus_held(record({"gpus": 2}, {"device": "cpu (2 threads)", "world_size": "2"})) == 0
    assert gpus_held(record({"device": "cpu", "processes": 2})) == 0
    row = RunStatus("h", "s", "d", "running", 0, 10, None, None, 1800.0, None, gpus=8)
    assert row.gpu_h == pytest.approx(4.0)
    assert RunStatus("h", "s", "d", "running", 0, 10, None, None, 1800.0, None).gpu_h is None


def test_a_local_job_that_dies_is_seen_dead_at_once_and_its_cause_is_stored(sqlite_store, planned, tmp_path):
    runs = registered(sqlite_store, planned)
    log = tmp_path / "77_0_log.err"
    log.write_text("Traceback (most recent call last):\n  ...\nOSError: [Errno 28] No space left on device\n")
    job = sleeper()
    try:
        submit_local(sqlite_store, runs[0].hash, job, log_path=str(log))
        assert judge(sqlite_store.runs())[runs[0].hash].alive
        assert reap(sqlite_store) == {}
        job.kill()
        job.wait()
        verdict = judge(sqlite_store.runs())[runs[0].hash]
        assert not verdict.alive and f"process {job.pid}" in verdict.why
        ended = reap(sqlite_store)
    finally:
        job.kill()
    assert list(ended) == [runs[0].hash]
    record = sqlite_store.get_run(runs[0].hash)
    assert record.status == "failed" and "No space left on device" in record.error and "is gone" in record.error


def test_a_run_queued_by_a_dead_launcher_is_dead_and_a_live_ones_is_not(sqlite_store, planned):
    runs = registered(sqlite_store, planned)
    launcher = sleeper()
    ref = processes.reference(launcher.pid)
    owner = Owner(token="gone", host=ref.host, pid=ref.pid, started=ref.started, boot=ref.boot, pidns=ref.pidns)
    assert sqlite_store.claim(runs[0].hash, owner)
    assert sqlite_store.claim(runs[1].hash, here_owner())
    assert judge(sqlite_store.runs())[runs[0].hash].alive
    launcher.kill()
    launcher.wait()
    verdicts = judge(sqlite_store.runs())
    assert not verdicts[runs[0].hash].alive and "launcher" in verdicts[runs[0].hash].why
    assert verdicts[runs[1].hash].alive


# the store says the job was this pid, but a process that started an hour earlier, or half a second earlier (the
# process that took the job's pid right after it ended): either is not the job, and cancel leaves it alone
@pytest.mark.parametrize("earlier_s", [3600, 0.5])
def test_a_reused_pid_is_not_the_job(sqlite_store, planned, earlier_s):
    runs = registered(sqlite_store, planned)
    stranger = sleeper()
    try:
        started = psutil.Process(stranger.pid).create_time() - earlier_s
        submit_local(sqlite_store, runs[0].hash, stranger, job_started=started)
        assert not judge(sqlite_store.runs())[runs[0].hash].alive
        done = cancel(sqlite_store, runs[0].hash[:10])
        assert [c.hash for c in done] == [runs[0].hash]
        assert "not the job's" in done[0].job and "not signalled" in done[0].job
        time.sleep(0.5)
        assert stranger.poll() is None, "cancel signalled a process that is not the job's"
    finally:
        stranger.kill()
    assert sqlite_store.get_run(runs[0].hash).status == "cancelled"


def test_the_job_is_known_by_its_start_time_exactly_as_recorded(store, planned):
    """The start time goes through SQLite's and PostgreSQL's floats unchanged, so the job is still recognised."""
    runs = registered(store, planned)
    job = sleeper()
    try:
        submit_local(store, runs[0].hash, job)  # its start time as psutil gives it, through the store
        assert judge(store.runs())[runs[0].hash].alive
        done = cancel(store, runs[0].hash[:10])
        assert done[0].job == f"its job (process {job.pid}) was stopped", done[0].job
        assert job.wait(timeout=30) is not None
    finally:
        job.kill()


def test_a_job_on_another_machine_lives_by_its_lease(sqlite_store, planned):
    runs = registered(sqlite_store, planned)
    far = Owner(token="far", host="node-far", pid=4242, started=1.0)
    assert sqlite_store.claim(runs[0].hash, far, lease=timedelta(minutes=5))
    assert sqlite_store.record_submission(runs[0].hash, far.token, "local:4242", job_started=1.0)
    assert judge(sqlite_store.runs())[runs[0].hash].alive
    later = datetime.now(timezone.utc) + timedelta(minutes=6)
    verdict = judge(sqlite_store.runs(), later)[runs[0].hash]
    assert not verdict.alive and "node-far" in verdict.why
    # cancel from here cannot signal it: the job stops at its next heartbeat
    done = cancel(sqlite_store, runs[0].hash)
    assert "node-far" in done[0].job and not sqlite_store.heartbeat(runs[0].hash, far.token)


@pytest.mark.parametrize("other", ["boot", "pidns", "unrecorded"])
def test_a_job_this_machine_cannot_see_is_unknown_and_lives_by_its_lease_never_dead(sqlite_store, planned, other):
    """Same host name, but another boot, another PID namespace, or a claim that did not record them (a clone of
    one VM image, a container): its pid means nothing here, so a pid that is gone here proves nothing."""
    runs = registered(sqlite_store, planned)
    gone = sleeper()
    gone.kill()
    gone.wait()
    me = processes.this_process()
    machine = {"boot": me.boot, "pidns": me.pidns}
    machine.update({"boot": "another-boot"} if other == "boot" else {"pidns": "pid:[1]"} if other == "pidns"
                   else {"boot": None, "pidns": None})
    owner = Owner(token="clone", host=me.host, pid=gone.pid, started=1.0, **machine)
    assert sqlite_store.claim(runs[0].hash, owner, lease=timedelta(minutes=5))
    assert sqlite_store.record_submission(runs[0].hash, owner.token, f"local:{gone.pid}", job_started=1.0)
    verdict = judge(sqlite_store.runs())[runs[0].hash]
    assert verdict.alive and "renewed its claim" in verdict.why, verdict
    later = datetime.now(timezone.utc) + timedelta(minutes=6)
    verdict = judge(sqlite_store.runs(), later)[runs[0].hash]
    assert not verdict.alive and "no word from its job or launcher" in verdict.why, verdict
    # nor is a process signalled there: cancel says why it cannot be seen
    done = cancel(sqlite_store, runs[0].hash)
    assert "not signalled" in done[0].job and "gone" not in done[0].job, done[0].job


# like submitit's local controller started from a script: it ignores SIGINT, and so does the task it starts
CONTROLLER = """
import signal, subprocess, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
task = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                         "signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(120)"],
                        stdout=subprocess.PIPE, text=True)
print(task.pid, flush=True)
task.stdout.readline()
print('ready', flush=True)
task.wait()
"""


@pytest.mark.slow
def test_cancel_stops_a_local_job_and_its_task_and_marks_the_run(sqlite_store, planned):
    runs = registered(sqlite_store, planned)
    controller = subprocess.Popen([sys.executable, "-c", CONTROLLER], stdout=subprocess.PIPE, text=True)
    try:
        task_pid = int(controller.stdout.readline())
        assert controller.stdout.readline().strip() == "ready"
        submit_local(sqlite_store, runs[0].hash, controller)
        drive(sqlite_store, runs[1].hash, "completed")
        done = cancel(sqlite_store, "ablation")
        assert [c.hash for c in done] == [runs[0].hash, runs[2].hash]
        assert "was stopped" in done[0].job and "no job" in done[1].job
        controller.wait(timeout=15)  # returns only once the controller is gone (its code: psutil reaped it)
        assert not psutil.pid_exists(controller.pid)
        assert not psutil.pid_exists(task_pid) or psutil.Process(task_pid).status() == psutil.STATUS_ZOMBIE
    finally:
        if controller.poll() is None:
            controller.kill()
    assert sqlite_store.get_run(runs[0].hash).status == "cancelled"
    assert sqlite_store.get_run(runs[1].hash).status == "completed"


def test_runs_are_found_by_spec_or_hash_prefix(sqlite_store, planned):
    runs = registered(sqlite_store, planned)
    assert [r.hash for r in find_runs(sqlite_store, runs[1].hash[:8])] == [runs[1].hash]
    assert len(find_runs(sqlite_store, "ablation")) == 3
    with pytest.raises(LookupError, match="no spec or run matches"):
        find_runs(sqlite_store, "zzzzzz")


def test_logs_print_the_epoch_lines_and_the_errors(sqlite_store, planned, tmp_path):
    runs = registered(sqlite_store, planned)
    err = tmp_path / "12_0_log.err"
    err.write_text("Traceback: boom\n")
    err.with_suffix(".out").write_text("epoch 1/300  train_loss 2.3000  top1 41.50\n")
    assert sqlite_store.claim(runs[0].hash, TEST_OWNER)
    assert sqlite_store.record_submission(runs[0].hash, TEST_OWNER.token, "local:12", log_path=str(err))
    text = log_text(sqlite_store, runs[0].hash[:10])
    assert "epoch 1/300" in text and "Traceback: boom" in text
    assert text.index("epoch 1/300") < text.index("Traceback: boom")
    with pytest.raises(LookupError, match="no log yet"):
        log_text(sqlite_store, runs[1].hash[:10])


def test_retry_rebuilds_failed_runs_with_their_stored_dependencies(sqlite_store, planned):
    teacher, student, other = planned(3)
    student = replace(student, depends_on=(teacher.hash,))
    sqlite_store.register_runs("ablation", [teacher, student, other])
    drive(sqlite_store, teacher.hash, "completed")
    drive(sqlite_store, student.hash, "failed", error="x")
    drive(sqlite_store, other.hash, "cancelled")
    again = {r.hash: r for r in failed_runs(sqlite_store, "ablation")}
    assert sorted(again) == sorted([student.hash, other.hash])
    assert again[student.hash].depends_on == (teacher.hash,) and again[other.hash].depends_on == ()
    assert again[student.hash].config == student.config


def test_a_slurm_job_that_cannot_be_asked_about_lives_until_it_started_and_fell_silent(sqlite_store, planned,
                                                                                       monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")  # no squeue, no sacct: a machine that only shares the store
    runs = registered(sqlite_store, planned)
    far = Owner(token="far", host="login-node", pid=1, started=1.0)
    for run in runs[:2]:
        assert sqlite_store.claim(run.hash, far, lease=timedelta(seconds=1))
        assert sqlite_store.record_submission(run.hash, far.token, "slurm:4242")
    assert sqlite_store.mark_started(runs[1].hash, far.token, "gpu-node", {}, lease=timedelta(seconds=1))
    later = datetime.now(timezone.utc) + timedelta(days=2)
    verdicts = judge(sqlite_store.runs(), later)
    assert verdicts[runs[0].hash].alive and "waits in the queue" in verdicts[runs[0].hash].why
    assert not verdicts[runs[1].hash].alive
