"""A run of several CPU processes through the cluster: `processes: 2` in its config, trained by `harness run
--executor slurm` as one 2-task SLURM job (DDP over gloo, rank and world size from submitit's job environment).

Needs the single-node SLURM that `.ci/slurm.sh` starts (tests/slurm_fixtures.py)."""

from __future__ import annotations

import re
from collections import Counter as Count
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.config import RunConfig
from harness.launch.slurm import SlurmConfig, executor_parameters
from tests.slurm_fixtures import slurm  # noqa: F401  (a fixture)

SPEC = """
name: ddp
base:
  model: {name: deit_tiny_patch4_32, drop_path: 0.0}
  data: {name: digits, img_size: 16, num_workers: 0, train_subset: 200}
  device: cpu
  processes: 2
  # 20 images a process: Mixup wants an even batch in each
  batch_size: 40
  eval_batch_size: 200
  schedule: {epochs: 2, warmup_epochs: 0}
  augment: {auto_augment: null, random_erasing: 0.0, repeated_aug: false}
  throughput: {protocols: [], batch_size: 16, repeats: 1}
variants:
  two_processes: {}
"""


def test_processes_are_a_cpu_setting_in_the_hash():
    from harness.config import run_hash

    one, two = RunConfig(device="cpu"), RunConfig(device="cpu", processes=2)
    assert run_hash(one) != run_hash(two)
    with pytest.raises(ValueError, match="needs device: cpu"):
        RunConfig(processes=2)
    with pytest.raises(ValueError, match="not divisible"):
        RunConfig(device="cpu", processes=3, batch_size=64)


def test_gpus_and_accumulation_are_in_the_hash_only_when_set_and_checked_against_the_batch():
    from harness.config import run_hash

    # the hashes of runs stored before these keys existed stay what they were
    assert run_hash(RunConfig()) == "f9f72e2c2e74e4885d404820048f3ac93538da2a82f791ffc1239c3dce232d6c"
    assert run_hash(RunConfig(device="cpu", processes=2, batch_size=64)) == (
        "58091d1ddba4213ffd4b8c9b841c502339a90d3dfe7093224c10350b2d6a9eec")
    assert {"gpus", "accumulation_steps"}.isdisjoint(RunConfig().as_json())
    hashes = {run_hash(RunConfig()), run_hash(RunConfig(gpus=8)), run_hash(RunConfig(accumulation_steps=2)),
              run_hash(RunConfig(accumulation_steps="auto"))}
    assert len(hashes) == 4
    assert RunConfig(gpus=8).devices == 8 and RunConfig(device="cpu", processes=2).devices == 2
    with pytest.raises(ValueError, match="needs device: cuda or auto"):
        RunConfig(device="cpu", gpus=2)
    with pytest.raises(ValueError, match="not divisible by gpus: 3"):
        RunConfig(gpus=3)
    with pytest.raises(ValueError, match=r"batch_size 1024 is not divisible by gpus x accumulation_steps \(8 x 3\)"):
        RunConfig(gpus=8, accumulation_steps=3)
    with pytest.raises(ValueError, match="at least 1"):
        RunConfig(accumulation_steps=0)


def test_a_run_of_n_processes_asks_slurm_for_n_tasks_and_a_gpu_job_for_one_per_gpu():
    assert executor_parameters(SlurmConfig(), processes=2)["tasks_per_node"] == 2
    assert executor_parameters(SlurmConfig())["tasks_per_node"] == 1
    assert executor_parameters(SlurmConfig(gpus_per_node=4), processes=2)["tasks_per_node"] == 4


@pytest.mark.slow
def test_harness_run_trains_one_run_as_a_two_task_slurm_job(slurm, tmp_path):  # noqa: F811
    (tmp_path / "ddp.yaml").write_text(SPEC)
    db = f"sqlite:///{tmp_path / 'store.db'}"
    out = tmp_path / "out"
    env = {"OMP_NUM_THREADS": "1", "HARNESS_DB": ""}
    runner = CliRunner()
    common = ["--db", db, "--output", str(out), "--executor", "slurm", "--mem-gb", "2"]
    plan = runner.invoke(app, ["run", str(tmp_path / "ddp.yaml"), "--dry-run", *common], env=env)
    assert plan.exit_code == 0, plan.output
    assert "2 processes per run" in plan.output

    result = runner.invoke(app, ["run", str(tmp_path / "ddp.yaml"), *common], env=env)
    assert result.exit_code == 0, result.output

    from harness.store import open_store

    store = open_store(db, create=False)
    [record] = store.runs(spec="ddp")
    assert record.status == "completed", (record.status, record.error)
    assert record.job_id.startswith("slurm:")
    assert record.info["world_size"] == "2"
    # one set of metrics: rank 0 alone reports, each epoch's metrics once
    rows = store.metrics([record.hash])
    counts = Count((epoch, name) for _, epoch, name, _ in rows)
    assert {epoch for epoch, _ in counts} == {0, 1} and set(counts.values()) == {1}
    # both tasks trained, and ended with the same weights
    job = record.job_id.split(":", 1)[1]
    logs = sorted((out / "submitit").glob(f"{job}_*_log.out"))
    digests = {}
    for log in logs:
        found = re.search(r"rank (\d) of 2: final weights sha256 ([0-9a-f]{64})", log.read_text())
        if found:
            digests[int(found.group(1))] = found.group(2)
    assert set(digests) == {0, 1}, [log.read_text()[-2000:] for log in logs]
    assert digests[0] == digests[1]

    # the cost of the run counts both processes: CPU process-hours = training time x 2
    from harness.report.cost import run_cost

    assert run_cost(record).cpu_h == pytest.approx(record.final["train_time_s"] * 2 / 3600)
    assert run_cost(record).gpu_h == 0.0
    store.close()


def _train_on_slurm(spec: Path, folder: Path, extra: list[str]) -> tuple[object, list[tuple[int, str, float]]]:
    """`harness run --executor slurm` of `spec` into `folder`; the run's record and its per-epoch metrics."""
    return _train_on(spec, folder, ["--executor", "slurm", "--mem-gb", "2", *extra])


def _train_on(spec: Path, folder: Path, extra: list[str]) -> tuple[object, list[tuple[int, str, float]]]:
    """`harness run` of `spec` into `folder` with the options `extra`; the run's record and its metrics."""
    from harness.store import open_store

    db = f"sqlite:///{folder / 'store.db'}"
    result = CliRunner().invoke(app, ["run", str(spec), "--db", db, "--output", str(folder / "out"), *extra],
                                env={"OMP_NUM_THREADS": "1", "HARNESS_DB": ""})
    assert result.exit_code == 0, result.output
    store = open_store(db, create=False)
    [record] = store.runs()
    rows = store.metrics([record.hash])
    store.close()
    return record, rows


@pytest.mark.slow
def test_a_two_task_job_at_its_time_limit_is_requeued_and_ends_as_if_uninterrupted(slurm, tmp_path):  # noqa: F811
    # slurmctld signals a job 65-95 s after its start with 25 s of a 2-minute limit (it checks every 30 s; see
    # test_launch_slurm.py); each start spends ~15 s importing and building before its first epoch, and 200
    # epochs of two processes take longer than what is left even on a quiet machine (about 0.4 s an epoch there:
    # 40 epochs ended before the signal), so the job is requeued and resumes. Beside the suite's other worker an
    # epoch takes about 1 s (35 epochs a start): up to 8 requeues let a busy machine finish too
    spec = tmp_path / "ddp.yaml"
    spec.write_text(SPEC.replace("epochs: 2", "epochs: 200") + "slurm: {signal_delay_s: 25}\n")
    requeued, rows = _train_on_slurm(spec, tmp_path / "requeued", ["--time", "2", "--max-requeues", "8"])
    straight, reference = _train_on_slurm(spec, tmp_path / "straight", [])
    assert requeued.status == straight.status == "completed", (requeued.error, straight.error)
    job = requeued.job_id.split(":", 1)[1]
    log = (tmp_path / "requeued" / "out" / "submitit" / f"{job}_0_log.err").read_text()
    assert "timed-out" in log, log[-3000:]
    timing = {"train_img_s", "data_wait_s", "data_wait_frac"}
    assert [r for r in rows if r[2] not in timing] == [r for r in reference if r[2] not in timing]


def _final_digests(logs: Path) -> dict[int, str]:
    """Each task's final-weights digest, from the job logs under `logs`."""
    digests = {}
    for log in logs.glob("*_log.out"):
        for rank, digest in re.findall(r"rank (\d) of 2: final weights sha256 ([0-9a-f]{64})", log.read_text()):
            digests[int(rank)] = digest
    return digests


@pytest.mark.slow
def test_two_local_processes_train_the_weights_of_a_two_task_slurm_job(slurm, tmp_path):  # noqa: F811
    """The local executor starts one task per process as SLURM does (DDP over gloo, rank and world size from
    submitit's job environment): the same run ends with the same weights, bit for bit, and the same metrics."""
    spec = tmp_path / "ddp.yaml"
    spec.write_text(SPEC)
    on_slurm, slurm_rows = _train_on_slurm(spec, tmp_path / "slurm", [])
    here, local_rows = _train_on(spec, tmp_path / "local", ["--executor", "local"])
    assert on_slurm.status == here.status == "completed", (on_slurm.error, here.error)
    assert here.job_id.startswith("local:") and here.info["world_size"] == "2"
    slurm_digests = _final_digests(tmp_path / "slurm" / "out" / "submitit")
    local_digests = _final_digests(tmp_path / "local" / "out" / "submitit")
    assert set(slurm_digests) == set(local_digests) == {0, 1}
    assert set(local_digests.values()) == set(slurm_digests.values()) and len(set(local_digests.values())) == 1
    timing = {"train_img_s", "data_wait_s", "data_wait_frac"}
    assert [r for r in local_rows if r[2] not in timing] == [r for r in slurm_rows if r[2] not in timing]
