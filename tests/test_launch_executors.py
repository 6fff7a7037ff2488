"""The executors' one wait loop (`executors.wait_for_jobs`) and the rule of threads per run."""

from __future__ import annotations

import time

import pytest

from harness.launch import executors
from harness.launch.executors import wait_for_jobs
from harness.launch.interrupts import LaunchInterrupted


def test_a_wait_sleeps_after_every_look_that_moved_nothing_and_looks_again(monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr(executors.time, "sleep", slept.append)
    # four looks: nothing, nothing, a job ended, the last one ended
    moves = iter([False, False, True, True])
    left = [2]

    def look() -> bool:
        moved = next(moves)
        if moved:
            left[0] -= 1
        return moved

    wait_for_jobs(look, busy=lambda: left[0] > 0, renew=lambda: None, stop=lambda: [], poll_s=0.25)
    assert slept == [0.25, 0.25]  # no sleep after a look that moved something, none once nothing is left


def test_a_wait_renews_the_claims_on_schedule_and_reads_the_schedule_each_pass():
    renewals: list[float] = []
    every = [0.05]
    start = time.monotonic()
    wait_for_jobs(lambda: False, busy=lambda: time.monotonic() - start < 0.5,
                  renew=lambda: renewals.append(time.monotonic() - start), stop=lambda: [], poll_s=0.01,
                  renew_every_s=lambda: every[0])
    assert 4 <= len(renewals) <= 10, renewals
    assert all(b - a >= 0.05 for a, b in zip(renewals, renewals[1:])), renewals


def test_ctrl_c_while_waiting_stops_what_the_executor_started(monkeypatch):
    def interrupted(_seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(executors.time, "sleep", interrupted)
    with pytest.raises(LaunchInterrupted) as caught:
        wait_for_jobs(lambda: False, busy=lambda: True, renew=lambda: None,
                      stop=lambda: ["abc  cancelled: its job (process 7) was stopped"], poll_s=1.0)
    assert caught.value.lines == ["abc  cancelled: its job (process 7) was stopped"]


def test_threads_per_run_split_this_machines_cores_unless_told(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(executors.os, "cpu_count", lambda: 8)
    assert executors.threads_per_run(None, "local", max_parallel=2) == 4
    assert executors.threads_per_run(3, "local", max_parallel=2) == 3
    assert executors.threads_per_run(None, "slurm") is None
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert executors.threads_per_run(None, "local") is None
