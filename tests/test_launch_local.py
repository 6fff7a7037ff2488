"""The local launch (harness/launch/local.py): runs trained at once, one GPU each, and a student whose teacher failed.

The slot tests give `run_locally` runs claimed in a real store and stand-in jobs (tests/local_jobs.py) that
run as submitit's real local processes; GPUs are simulated through CUDA_VISIBLE_DEVICES, which is all
`local_gpu_ids` and submitit read.
"""

from __future__ import annotations

import json
from itertools import combinations

import pytest

from harness.launch import LaunchOptions, LaunchResult, launch
from harness.launch.launcher import claim_runs, new_owner
from harness.launch.local import run_locally
from harness.spec import expand, load_spec
from tests.local_jobs import TimedJob
from tests.tiny_spec import tiny_spec
from tests.test_spec import write

# jobs of the local executor: the full suite's, not the fast lane's
pytestmark = pytest.mark.slow


def max_at_once(spans: list[tuple[float, float]]) -> int:
    """The most spans (start, end) that hold at one moment."""
    return max(sum(s <= start < e for s, e in spans) for start, _ in spans)


@pytest.mark.parametrize("visible, max_parallel, n_runs, at_once", [
    ("0,1,2", 3, 5, 3),  # one run per GPU; the 4th and 5th take GPUs freed by the first ones
    ("0,1,2", 2, 3, 2),  # --max-parallel below the GPU count
    ("0,1", 3, 3, 2),    # fewer GPUs than --max-parallel: one run per GPU, never two on one
])
def test_local_runs_train_n_at_once_each_on_its_own_gpu(tmp_path, sqlite_url, planned, monkeypatch,
                                                        importable_by_jobs, visible, max_parallel, n_runs, at_once):
    from harness.store import open_store

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    store = open_store(sqlite_url)
    runs = planned(n_runs)
    store.register_experiment("ablation", "name: ablation\n", "ablation.yaml")
    store.register_runs("ablation", runs)
    owner, result, lines = new_owner(), LaunchResult([]), []
    claimed = claim_runs(store, runs, owner, result, lines.append)
    assert [r.hash for r in claimed] == [r.hash for r in runs]
    folder = tmp_path / "seen"
    folder.mkdir()
    # the first job ends once the first round has started; the others of that round work on until the next job
    # has started beside them, on the one GPU the first job freed
    together = [at_once] + [at_once + 1] * (at_once - 1) + [0] * (n_runs - at_once)
    jobs = {r.hash: TimedJob(sqlite_url, r.hash, owner.token, str(folder), together=n) for r, n in zip(runs, together)}

    run_locally("local", claimed, jobs, store, owner, tmp_path / "out", max_parallel, 0.05, lines.append, result)

    assert result.ok and sorted(result.submitted) == sorted(jobs), [f.error for f in result.failures]
    assert {r.status for r in store.runs()} == {"completed"}
    seen = [json.loads((folder / f"{h}.json").read_text()) for h in jobs]
    assert max_at_once([(s["start"], s["end"]) for s in seen]) == at_once, seen
    gpus = visible.split(",")
    assert all(s["gpus"] in gpus for s in seen), seen  # a single GPU each, one of the machine's
    for a, b in combinations(seen, 2):
        if a["start"] < b["end"] and b["start"] < a["end"]:
            assert a["gpus"] != b["gpus"], (a, b)  # two jobs at once never share a GPU


def gpu_runs(gpus: list[int]) -> list:
    """Runs asking for these GPU counts (device auto), in this order."""
    from harness.config import DataConfig, ModelConfig, RunConfig, run_hash
    from harness.spec import PlannedRun

    runs = []
    for i, n in enumerate(gpus):
        config = RunConfig(model=ModelConfig(name="deit_tiny_patch4_32"), data=DataConfig(name="digits", img_size=16),
                           batch_size=60, seed=i, gpus=n)
        runs.append(PlannedRun(hash=run_hash(config), config=config, spec="ablation", profile=None, variant=f"g{n}",
                               label=f"{n} GPUs", coords={}, seed=i))
    return runs


def test_a_run_of_several_gpus_holds_that_many_of_its_own_with_one_task_each(tmp_path, sqlite_url, monkeypatch,
                                                                             importable_by_jobs):
    """Four GPUs: two runs of 2 GPUs together, then a run of 1, then a run of all 4 waits for every GPU to be
    free; a run of 5 cannot train here and fails saying so."""
    from harness.store import open_store

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    store = open_store(sqlite_url)
    runs = gpu_runs([2, 2, 1, 4, 5])
    store.register_experiment("ablation", "name: ablation\n", "ablation.yaml")
    store.register_runs("ablation", runs)
    owner, result, lines = new_owner(), LaunchResult([]), []
    claimed = claim_runs(store, runs, owner, result, lines.append)
    folder = tmp_path / "seen"
    folder.mkdir()
    together = [2, 2, 1, 1, 1]
    jobs = {r.hash: TimedJob(sqlite_url, r.hash, owner.token, str(folder), together=n) for r, n in zip(runs, together)}

    run_locally("local", claimed, jobs, store, owner, tmp_path / "out", 8, 0.05, lines.append, result)

    too_big = runs[-1]
    assert [f.run.hash for f in result.failures] == [too_big.hash], [f.error for f in result.failures]
    assert store.get_run(too_big.hash).error == "it asks for gpus: 5 and this machine shows 4"
    seen = {r.hash: json.loads((folder / f"{r.hash}.json").read_text()) for r in runs[:-1]}
    for run in runs[:-1]:
        held = seen[run.hash]["gpus"].split(",")
        assert len(held) == run.config.gpus and set(held) <= {"0", "1", "2", "3"}, seen[run.hash]
        # one task per GPU, each shown the run's GPUs (the task of local rank i trains on the i-th)
        assert seen[run.hash]["tasks"] == str(run.config.gpus)
        others = sorted(f.read_text() for f in folder.glob(f"{run.hash}.rank*"))
        assert others == [seen[run.hash]["gpus"]] * (run.config.gpus - 1)
    assert max_at_once([(s["start"], s["end"]) for s in seen.values()]) == 2
    for a, b in combinations(seen.values(), 2):
        if a["start"] < b["end"] and b["start"] < a["end"]:
            assert not set(a["gpus"].split(",")) & set(b["gpus"].split(",")), (a, b)
    # the run of all four GPUs started only after every other run had ended
    whole = seen[runs[3].hash]
    assert all(s["end"] <= whole["start"] for h, s in seen.items() if h != runs[3].hash)


def test_max_parallel_defaults_to_the_visible_gpus_else_to_the_cores(monkeypatch):
    from harness.cli.common import LaunchChoices
    from harness.launch import executors

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3,4,5,6,7")
    assert executors.default_max_parallel() == 8
    assert LaunchChoices("local", None, None, False, {}).options(None).max_parallel == 8
    assert LaunchChoices("local", 3, None, False, {}).options(None).max_parallel == 3
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setattr(executors.os, "cpu_count", lambda: 16)
    assert executors.default_max_parallel() == 16
    assert executors.default_max_parallel(threads=4) == 4
    assert LaunchChoices("local", None, 8, False, {}).options(None).max_parallel == 2


# the tiny spec's runs (16-px digits, one epoch) as a teacher that fails as soon as its job builds its data
# (a batch larger than its 64 training images) and a student that needs it
DEPENDENT = tiny_spec("dependent").replace("seeds: [0]", """variants:
  teacher:
    set: {batch_size: 128}
  student:
    set: {model.name: deit_tiny_patch4_32, model.distillation_token: true,
          distillation: {kind: hard, teacher: {model: resnet_tiny_32, run: teacher}}}
""")


def test_a_student_whose_teacher_failed_is_not_run_and_says_why(tmp_path, sqlite_url):
    from harness.store import open_store

    loaded = load_spec(write(tmp_path, DEPENDENT))
    runs = expand(loaded)
    teacher = next(r for r in runs if r.variant == "teacher")
    student = next(r for r in runs if r.variant == "student")
    assert student.depends_on == (teacher.hash,)
    store = open_store(sqlite_url)
    options = LaunchOptions(executor="debug", output=tmp_path / "out", poll_s=0.05, threads=1)
    lines: list[str] = []

    result = launch(loaded, runs, store, sqlite_url, options, progress=lines.append)

    assert result.submitted == [teacher.hash]  # the student never went to an executor
    assert store.get_run(teacher.hash).status == "failed"
    record = store.get_run(student.hash)
    assert record.status == "failed" and record.job_id is None
    assert record.error == f"run {teacher.hash[:10]} that this run needs is failed", record.error
    failures = {f.run.hash: f.error for f in result.failures}
    assert failures[student.hash] == record.error and "larger than the training set" in failures[teacher.hash]
    assert any(student.short in line and f"failed: run {teacher.hash[:10]}" in line for line in lines), lines


# a teacher that trains, a student distilled from it and a fine-tuning of it, both naming it by run
LEARNERS = tiny_spec("learners").replace("seeds: [0]", """variants:
  teacher: {}
  student:
    set: {distillation: {kind: hard, teacher: {model: resnet_tiny_32, run: teacher}}}
  finetuned:
    set: {finetune: {from_run: teacher}}
""")


def test_a_completed_teacher_whose_weights_are_gone_stops_the_launch_before_anything_is_submitted(tmp_path):
    """The teacher is completed, so no launch trains it again; its published weights gone, the student and the fine-tuning
    would fail inside their jobs. `harness run` says so at plan time, one line each, exit 2."""
    import subprocess
    import sys

    from harness.store import open_store
    from tests.tiny_spec import REPO, harness_env

    spec = write(tmp_path, LEARNERS)
    loaded = load_spec(spec)
    runs = expand(loaded)
    teacher = next(r for r in runs if r.variant == "teacher")
    db_url, out = f"sqlite:///{tmp_path / 'harness.db'}", tmp_path / "out"
    store = open_store(db_url)
    options = LaunchOptions(executor="debug", output=out, poll_s=0.05, threads=1)
    assert launch(loaded, [teacher], store, db_url, options, progress=lambda line: None).ok
    weights = out / "jobs" / teacher.hash[:16] / store.run_files(teacher.hash)["model"].name
    weights.unlink()
    before = sorted(out.rglob("*"))

    done = subprocess.run([sys.executable, "-m", "harness", "run", str(spec), "--output", str(out), "--db", db_url,
                           "--executor", "local"], cwd=REPO, env=harness_env(), capture_output=True, text=True,
                          timeout=120)

    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    for key in ("distillation.teacher.run", "finetune.from_run"):
        [line] = [line for line in lines if key in line]
        assert f"run {teacher.short}" in line and str(weights) in line, lines
    assert "Traceback" not in done.stderr
    assert {r.hash: r.status for r in store.runs()} == {teacher.hash: "completed"}  # nothing else registered
    assert sorted(out.rglob("*")) == before  # no job folder, no submitit pickle
