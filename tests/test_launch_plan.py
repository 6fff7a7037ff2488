"""Planning: what is done, in flight or to run, and the order dependencies impose."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from harness.launch import dependency_order, format_plan, plan
from harness.spec import expand, load_spec
from tests.test_spec import SPEC, write


def runs(tmp_path):
    return expand(load_spec(write(tmp_path, SPEC)), "quick")


def test_completed_runs_are_done_and_stale_active_runs_run_again(tmp_path):
    rs = runs(tmp_path)
    now = datetime.now(timezone.utc)
    statuses = {rs[0].hash: "completed", rs[1].hash: "running", rs[2].hash: "running", rs[3].hash: "failed"}
    beats = {rs[1].hash: now - timedelta(seconds=20), rs[2].hash: now - timedelta(hours=1)}
    states = [e.state for e in plan(rs, statuses, beats, now)]
    assert states == ["done", "in_flight", "to_run", "to_run", "to_run"]


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
