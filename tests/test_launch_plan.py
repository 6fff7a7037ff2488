"""Planning: what is done, in flight or to run, and the order dependencies impose."""

from __future__ import annotations

from harness.launch import dependency_order, format_plan, plan
from harness.launch.liveness import Verdict
from harness.spec import expand, load_spec
from tests.test_spec import SPEC, write


def runs(tmp_path):
    return expand(load_spec(write(tmp_path, SPEC)), "quick")


def test_completed_runs_are_done_and_dead_active_runs_run_again(tmp_path):
    rs = runs(tmp_path)
    statuses = {rs[0].hash: "completed", rs[1].hash: "running", rs[2].hash: "running", rs[3].hash: "failed"}
    verdicts = {rs[1].hash: Verdict(True, "its job runs"), rs[2].hash: Verdict(False, "its job is gone")}
    entries = plan(rs, statuses, verdicts)
    assert [e.state for e in entries] == ["done", "in_flight", "to_run", "to_run", "to_run"]
    assert entries[1].why == "its job runs" and "its job runs" in format_plan(entries)


def test_dependencies_come_first(tmp_path):
    rs = runs(tmp_path)
    ordered = dependency_order(reversed(rs))
    position = {r.hash: i for i, r in enumerate(ordered)}
    for r in ordered:
        for dep in r.depends_on:
            assert position[dep] < position[r.hash]
    assert sorted(position) == sorted(r.hash for r in rs)


def test_format_plan_has_hash_state_and_coordinates(tmp_path):
    rs = runs(tmp_path)
    text = format_plan(plan(rs, {rs[0].hash: "completed"}))
    first = text.splitlines()[0]
    assert first.startswith(rs[0].short) and "done" in first and "teacher" in first
    assert "model.name=deit_tiny_patch4_32" in text
