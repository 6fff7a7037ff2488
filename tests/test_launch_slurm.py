"""harness.launch.slurm: job parameters, and job arrays, dependencies, requeues and cancels on a real SLURM.

The SLURM tests need the single-node SLURM that `.ci/slurm.sh` starts; see tests/slurm_fixtures.py.
"""

from __future__ import annotations

import json
import time
from functools import partial
from pathlib import Path

import pytest
import submitit

from harness.launch.liveness import judge, reap
from harness.launch.queue import UNLISTED, job_states, local_pid, slurm_job_id, store_status
from harness.launch.slurm import (
    SlurmConfig,
    executor_parameters,
    make_executor,
    parse_sbatch_options,
    slurm_config,
    submit_array,
    submit_graph,
)
from tests.slurm_fixtures import (  # noqa: F401  (slurm is a fixture)
    Counter,
    FakeRun,
    FakeStore,
    fail,
    read_after,
    sleep,
    sleep_then_write,
    slurm,
    square,
    squeue_field,
    wait_until,
)

# ---- without SLURM


def test_executor_parameters_map_the_config_and_leave_unset_values_to_the_cluster():
    config = SlurmConfig(partition="gpu", gpus_per_node=4, cpus_per_task=10, mem_gb=64, timeout_min=120,
                         constraint="a100", account="lab", qos="high", array_parallelism=8,
                         additional_parameters={"exclusive": True})
    params = executor_parameters(config)
    assert params["slurm_partition"] == "gpu" and params["slurm_constraint"] == "a100"
    assert params["slurm_account"] == "lab" and params["slurm_qos"] == "high"
    # one task per GPU: DDP takes rank and world size from submitit's job environment
    assert params["gpus_per_node"] == 4 and params["tasks_per_node"] == 4
    assert params["timeout_min"] == 120 and params["mem_gb"] == 64 and params["slurm_array_parallelism"] == 8
    assert params["slurm_additional_parameters"] == {"exclusive": True}
    assert "slurm_dependency" not in params
    bare = executor_parameters(SlurmConfig())
    assert not {"slurm_partition", "mem_gb", "cpus_per_task", "gpus_per_node", "slurm_account"} & set(bare)
    dependent = executor_parameters(config, dependency="afterok:12_0:13")
    assert dependent["slurm_dependency"] == "afterok:12_0:13"
    # a run whose teacher failed is cancelled by SLURM instead of pending forever
    assert dependent["slurm_additional_parameters"] == {"exclusive": True, "kill-on-invalid-dep": "yes"}


def test_command_line_values_override_the_spec_section():
    section = {"partition": "cpu", "timeout_min": 60, "additional_parameters": {"mail-type": "FAIL"}}
    config = slurm_config(section, partition="gpu", qos=None,
                          additional_parameters=parse_sbatch_options(["--exclusive", "comment=deit"]))
    assert config.partition == "gpu" and config.timeout_min == 60 and config.qos is None
    assert config.additional_parameters == {"mail-type": "FAIL", "exclusive": True, "comment": "deit"}
    with pytest.raises(ValueError):
        slurm_config({"partiton": "typo"})


def test_states_and_job_ids():
    assert store_status("PENDING") == "submitted" and store_status("RUNNING") == "running"
    assert store_status("CANCELLED by 0") == "cancelled" and store_status("TIMEOUT") == "failed"
    assert store_status("REQUEUED") == "requeued" and store_status("COMPLETED") == "completed"
    assert store_status("") is None
    assert slurm_job_id("slurm:12_3") == "12_3" and slurm_job_id("local:99") is None and slurm_job_id(None) is None
    assert local_pid("local:99") == 99 and local_pid("slurm:12") is None


def test_a_run_job_is_requeued_until_its_limit_then_fails(sqlite_store, planned, tmp_path):
    """RunJob.checkpoint, as submitit calls it at a time limit: requeued (recorded in the store) at most
    max_requeues times, then the run fails with the reason."""
    from harness.launch.job import RunJob
    from tests.runstate import TEST_OWNER, drive

    run = planned(1)[0]
    sqlite_store.register_runs("ablation", [run])
    drive(sqlite_store, run.hash, "running")
    url = sqlite_store.url.render_as_string(hide_password=False)
    job = RunJob(run.hash, run.config.as_json(), url, str(tmp_path), owner=TEST_OWNER.token, max_requeues=1)
    again = job.checkpoint()
    assert again is not None and again.function.requeues == 1 and again.function.owner == TEST_OWNER.token
    assert sqlite_store.get_run(run.hash).status == "requeued"
    assert sqlite_store.mark_started(run.hash, TEST_OWNER.token, "node2", {})
    assert again.function.checkpoint() is None
    record = sqlite_store.get_run(run.hash)
    assert record.status == "failed" and "after 1 requeues" in record.error


def test_a_run_whose_dependency_failed_is_not_submitted():
    store = FakeStore()
    store.add("teacher", "failed")
    student, grandchild = FakeRun("student", ("teacher",)), FakeRun("grand", ("student",))
    store.add("student", "queued")
    store.add("grand", "queued")
    assert submit_graph([student, grandchild], {}, store, "token", SlurmConfig(), "unused",
                        progress=lambda line: None) == {}
    assert store.get_run("student").status == "failed" and "teacher" in store.get_run("student").error
    assert store.get_run("grand").status == "failed"



def test_a_dependency_outside_the_graph_follows_the_launchs_one_rule():
    from datetime import datetime, timedelta, timezone

    store = FakeStore()
    # a teacher another launch trains on a laptop (a local job, its lease renewed): afterok cannot wait for it
    store.add("laptop", "running", job_id="local:4711")
    store.records["laptop"].lease_until = datetime.now(timezone.utc) + timedelta(minutes=5)
    # a teacher whose owner fell silent long ago: given up with its cause, its student not submitted
    store.add("silent", "running", job_id="local:4712")
    store.records["silent"].lease_until = datetime.now(timezone.utc) - timedelta(minutes=1)
    for name, dep in (("a", "laptop"), ("b", "silent")):
        store.add(name, "queued")
    lines: list[str] = []
    assert submit_graph([FakeRun("a", ("laptop",)), FakeRun("b", ("silent",))], {}, store, "token", SlurmConfig(),
                        "unused", progress=lines.append) == {}
    assert "trained outside SLURM" in store.get_run("a").error, store.get_run("a").error
    assert store.get_run("laptop").status == "running"
    assert store.get_run("silent").status == "failed" and "no word from its job" in store.get_run("silent").error
    assert store.get_run("b").status == "failed" and "was given up: no word" in store.get_run("b").error


# ---- on a real SLURM


def test_independent_runs_go_out_as_one_job_array(slurm, tmp_path):
    config = slurm.model_copy(update={"array_parallelism": 2, "account": "ci-lab"})
    start = time.monotonic()
    jobs = submit_array(make_executor(tmp_path, config), [partial(square, i) for i in range(4)])
    assert [job.result() for job in jobs] == [0, 1, 4, 9]
    array_ids = {job.job_id.split("_")[0] for job in jobs}
    assert len(array_ids) == 1 and [job.job_id.split("_")[1] for job in jobs] == ["0", "1", "2", "3"]
    script = Path(jobs[0].paths.submission_file).read_text()
    assert "#SBATCH --array=0-3%2" in script and "#SBATCH --account=ci-lab" in script
    assert "#SBATCH --partition=debug" in script
    print(f"job array of 4: {time.monotonic() - start:.1f}s")


def test_the_graph_is_submitted_at_once_and_slurm_orders_it(slurm, tmp_path):
    """A teacher and its student (afterok), and a failing teacher whose student SLURM cancels."""
    start = time.monotonic()
    out = tmp_path / "teacher.txt"
    store = FakeStore()
    runs = [FakeRun("teacher"), FakeRun("bad-teacher"), FakeRun("student", ("teacher",)),
            FakeRun("orphan", ("bad-teacher",))]
    for run in runs:
        store.add(run.hash, "queued")
    fns = {"teacher": partial(sleep_then_write, str(out), "soft labels", 3.0),
           "bad-teacher": fail,
           "student": partial(read_after, str(out)),
           "orphan": partial(square, 7)}
    jobs = submit_graph(runs, fns, store, "token", slurm, tmp_path, progress=lambda line: None)
    ids = {key: job.job_id for key, job in jobs.items()}
    # the teachers share one array; every run is in the queue and recorded before any has finished
    assert ids["teacher"].split("_")[0] == ids["bad-teacher"].split("_")[0]
    assert all(store.get_run(r.hash).status == "submitted" for r in runs)
    assert store.get_run("student").job_id == f"slurm:{ids['student']}"
    assert "Dependency" in squeue_field(ids["student"], "%r") and not out.exists()

    started, text = jobs["student"].result()
    assert text == "soft labels" and started >= jobs["teacher"].result()
    with pytest.raises(submitit.core.utils.FailedJobError):
        jobs["bad-teacher"].result()
    # the orphan's dependency can never be satisfied: SLURM cancels it and reaping records that
    wait_until(lambda: job_states([ids["orphan"]]).get(ids["orphan"], "").startswith("CANCELLED"), 30,
               "SLURM to cancel the run whose teacher failed")
    for key in ("teacher", "bad-teacher", "student"):
        store.add(key, "completed" if key != "bad-teacher" else "failed")
    assert list(reap(store)) == ["orphan"]
    assert store.get_run("orphan").status == "cancelled" and "CANCELLED" in store.get_run("orphan").error
    print(f"graph of 4 with dependencies: {time.monotonic() - start:.1f}s")


def test_a_run_at_its_time_limit_is_requeued_and_ends_as_if_uninterrupted(slurm, tmp_path):
    # slurmctld checks time limits every 30 s and signals a job whose limit comes within signal_delay_s + 30 s:
    # with 25 s of a 1-minute limit the signal comes 5-35 s after the start (not sooner: submitit sets its
    # handler only once the job's Python is up); 40 one-second steps cannot finish before it
    config = slurm.model_copy(update={"timeout_min": 1, "signal_delay_s": 25, "max_requeues": 1})
    start = time.monotonic()
    job = make_executor(tmp_path / "logs", config).submit(Counter(str(tmp_path / "run"), steps=40, step_s=1.0))
    result = job.result()
    elapsed = time.monotonic() - start
    reference = Counter(str(tmp_path / "uninterrupted"), steps=40)()
    assert result == reference
    starts = (tmp_path / "run" / "starts").read_text().splitlines()
    assert [line.split()[1] for line in starts] == ["requeues=0", "requeues=1"]
    assert json.loads((tmp_path / "run" / "state.json").read_text())["step"] == 40
    # the result is written just before the job step ends
    wait_until(lambda: job_states([job.job_id]) == {job.job_id: "COMPLETED"}, 30, "SLURM to see it completed")
    print(f"time limit, requeue, resume: {elapsed:.1f}s")


def test_a_cancelled_job_is_seen_as_cancelled(slurm, tmp_path):
    start = time.monotonic()
    job = make_executor(tmp_path, slurm).submit(sleep, 300)
    wait_until(lambda: job_states([job.job_id]).get(job.job_id) == "RUNNING", 30, "the job to start")
    store = FakeStore()
    store.add("run", "running", job_id=f"slurm:{job.job_id}")
    assert judge(store.runs())["run"].alive
    assert job_states(["999999"]) == {"999999": UNLISTED}
    job.cancel()
    wait_until(lambda: store_status(job_states([job.job_id]).get(job.job_id, "")) == "cancelled", 30,
               "SLURM to see the cancel")
    # submitit's own view: the job is done, its state CANCELLED
    assert job.done(force_check=True) and store_status(job.state) == "cancelled"
    verdict = judge(store.runs())["run"]
    assert not verdict.alive and verdict.end == "cancelled"
    assert reap(store) == {"run": store.get_run("run").error} and store.get_run("run").status == "cancelled"
    print(f"cancel: {time.monotonic() - start:.1f}s")


# ---- the launcher on a real SLURM: real runs through the store

E2E_SPEC = """
name: slurm-e2e
base:
  data: {name: digits, img_size: 32, num_workers: 0, train_subset: 100}
  model: {name: resnet_tiny_32}
  device: cpu
  batch_size: 50
  eval_batch_size: 200
  schedule: {epochs: 1, warmup_epochs: 0}
  augment: {auto_augment: null, random_erasing: 0.0, repeated_aug: false}
  throughput: {protocols: [], batch_size: 16, repeats: 1}
  distillation:
    teacher: {model: resnet_tiny_32, run: teacher}
variants:
  teacher:
    set: {distillation.teacher: null}
  student:
    set: {distillation.kind: hard}
"""


@pytest.mark.slow
def test_harness_launch_submits_a_teacher_and_its_student_to_slurm(slurm, tmp_path):
    from harness.launch import LaunchOptions, launch
    from harness.spec import expand, load_spec
    from harness.store import open_store

    start = time.monotonic()
    (tmp_path / "spec.yaml").write_text(E2E_SPEC)
    loaded = load_spec(tmp_path / "spec.yaml")
    runs = expand(loaded)
    db_url = f"sqlite:///{tmp_path / 'store.db'}"
    store = open_store(db_url)
    options = LaunchOptions(executor="slurm", output=tmp_path / "out", poll_s=0.5,
                            slurm=slurm.model_copy(update={"mem_gb": 2.0}))
    lines: list[str] = []
    result = launch(loaded, runs, store, db_url, options, progress=lines.append)
    assert result.ok, [f.error for f in result.failures]
    teacher, student = (store.get_run(next(r.hash for r in runs if r.variant == v)) for v in ("teacher", "student"))
    assert teacher.status == student.status == "completed"
    assert teacher.job_id.startswith("slurm:") and student.job_id.startswith("slurm:")
    assert any("after" in line and student.hash[:10] in line for line in lines), lines
    # SLURM held the student until its teacher had finished
    assert student.started_at >= teacher.ended_at
    print(f"harness launch on SLURM, teacher and student: {time.monotonic() - start:.1f}s")
