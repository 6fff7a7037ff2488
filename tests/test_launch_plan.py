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


def test_one_rule_says_whether_a_runs_dependencies_let_it_start(tmp_path):
    from types import SimpleNamespace

    from harness.launch.plan import BLOCKED, ORPHANED, READY, WAIT, dependency_state, readiness

    def record(status):  # type: ignore[no-untyped-def]
        return SimpleNamespace(status=status)

    alive, dead = Verdict(True, "its job runs"), Verdict(False, "its job's process 7 is gone")
    cases = [  # (record, verdict, among this launch's runs) -> state
        (record("completed"), None, False, READY),
        (record("running"), alive, False, WAIT),
        (record("queued"), alive, True, WAIT),
        (record("running"), dead, False, ORPHANED),  # reaped by whoever waits on it
        (record("submitted"), dead, True, ORPHANED),  # taken over and trained by the launch that waits on it
        (record("pending"), None, True, ORPHANED),  # given back: claimed by the launch that waits on it
        (record("pending"), None, False, BLOCKED),  # no launch will train it
        (record("failed"), None, True, BLOCKED),
        (record("cancelled"), None, False, BLOCKED),
        (None, None, True, BLOCKED),
    ]
    for stored, verdict, ours, expected in cases:
        assert dependency_state("d" * 64, stored, verdict, ours).state == expected, (stored, verdict, ours)
    failed = dependency_state("d" * 64, record("failed"), None, True)
    assert failed.why == "run dddddddddd that this run needs is failed"
    assert dependency_state("d" * 64, record("running"), dead, True).why == dead.why
    # a run with several dependencies follows the worst of them
    student = next(r for r in runs(tmp_path) if r.depends_on)
    judged = {d: dependency_state(d, record("completed"), None, False) for d in student.depends_on}
    assert readiness(student, judged).state == READY
    judged[student.depends_on[0]] = dependency_state(student.depends_on[0], record("running"), alive, False)
    assert readiness(student, judged).state == WAIT
