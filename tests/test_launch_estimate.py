"""Cost before it is spent: images per epoch without loading data, estimates from completed runs of known speed,
plans of unknown speed, the probe, a running run's remaining time, and the dry run's output."""

from __future__ import annotations

import functools
import os
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.config import RunConfig, run_hash
from harness.launch import estimate as est
from harness.spec import PlannedRun
from harness.store import RunRecord
from tests.runstate import TEST_OWNER, drive

CPU = f"cpu ({os.cpu_count() or 1} threads)"  # what a local run with --max-parallel 1 stores as its device


def config(**overrides) -> RunConfig:
    base = {"model": {"name": "deit_tiny_patch4_32"}, "data": {"name": "digits", "img_size": 16, "num_workers": 0},
            "batch_size": 64, "schedule": {"epochs": 24, "warmup_epochs": 1},
            "augment": {"repeated_aug": False}, "device": "cpu"}
    for key, value in overrides.items():
        node = base
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return RunConfig.model_validate(base)


def planned_run(cfg: RunConfig, variant: str = "v") -> PlannedRun:
    return PlannedRun(hash=run_hash(cfg), config=cfg, spec="cost", profile=None, variant=variant, label=variant,
                      coords={}, seed=cfg.seed)


def completed(store, cfg: RunConfig, img_s: float, device: str = CPU, world_size: int = 1) -> str:
    run = planned_run(cfg)
    store.register_experiment("cost", "name: cost\n", "cost.yaml")
    store.register_runs("cost", [run])
    store.log_final(run.hash, {"train_img_s": img_s, "train_time_s": 100.0},
                    {"device": device, "world_size": str(world_size)})
    drive(store, run.hash, "completed")
    return run.hash


# ---------------------------------------------------------------------------------------------------------------
# images per epoch


@pytest.mark.parametrize("n,world,batch,ra", [(1437, 1, 64, False), (1437, 1, 64, True), (6000, 2, 128, True),
                                              (6000, 4, 128, False), (200, 1, 16, True), (1000, 3, 96, True)])
def test_images_per_epoch_is_the_trainers_sampler_and_loader(n, world, batch, ra):
    from harness.trainer.loaders import build_train_sampler

    cfg = config(batch_size=batch, **{"augment.repeated_aug": ra})
    per_rank_batch = batch // world
    trained = sum(len(build_train_sampler(cfg, range(n), world, rank)) // per_rank_batch * per_rank_batch
                  for rank in range(world))
    assert est.images_per_epoch(n, cfg, world) == trained


def test_train_set_sizes_are_those_the_trainer_loads(tmp_path):
    from harness.trainer.datasets import FASHION_MNIST_DIR, _read_idx, build_dataset

    assert len(build_dataset(config()).train) == est.TRAIN_IMAGES["digits"] == est.train_set_size(config())[0]
    labels = FASHION_MNIST_DIR / "train-labels-idx1-ubyte.gz"
    if labels.exists():
        assert len(_read_idx(labels)) == est.TRAIN_IMAGES["fashion_mnist"]
    assert est.train_set_size(config(**{"data.name": "fashion_mnist", "data.train_subset": 6000}))[0] == 6000
    assert est.train_set_size(config(**{"data.name": "synthetic"}))[0] == est.SYNTHETIC_DEFAULT
    for cls in ("a", "b"):
        (tmp_path / "train" / cls).mkdir(parents=True)
        for i in range(3):
            (tmp_path / "train" / cls / f"{i}.JPEG").write_bytes(b"")
    (tmp_path / "train" / "a" / "notes.txt").write_text("not an image")
    size, how = est.train_set_size(config(**{"data.name": "imagefolder", "data.root": str(tmp_path)}))
    assert size == 6 and "image files under" in how
    size, how = est.train_set_size(config(**{"data.name": "imagefolder", "data.root": str(tmp_path / "gone")}))
    assert size is None and "unknown" in how


# ---------------------------------------------------------------------------------------------------------------
# estimates from the store


def test_estimate_from_completed_runs_of_known_speed(sqlite_store):
    completed(sqlite_store, config(seed=1), 100.0)
    completed(sqlite_store, config(seed=2), 600.0)
    completed(sqlite_store, config(seed=3), 200.0)
    completed(sqlite_store, config(seed=4), 9999.0, device="NVIDIA H100 80GB HBM3")  # another device: not a basis
    completed(sqlite_store, config(seed=5, batch_size=32), 9999.0)  # another batch size: not a basis
    todo = planned_run(config(seed=9))
    [e] = est.estimate_runs([todo], sqlite_store.runs(status="completed"), executor="local")
    per_epoch = 1437 // 64 * 64
    assert e.images_per_epoch == per_epoch
    assert e.train_s == pytest.approx(24 * per_epoch / 200.0)  # the median of 100, 200, 600 img/s
    assert e.wall_s == pytest.approx(e.train_s)  # stored times too short for a wall/training ratio
    assert e.gpu_h == 0.0 and "200 img/s measured by 3 completed runs of" in e.basis and CPU in e.basis
    text = est.format_estimates([e])
    assert "Estimate on the local executor" in text and "[1] 200 img/s measured" in text
    assert "digits: 1437 training images" in text


def test_gpu_hours_count_the_gpus_a_run_holds(sqlite_store):
    from harness.launch.slurm import SlurmConfig

    gpu = "NVIDIA A100-SXM4-80GB"
    cfg = config(device="auto", batch_size=256)
    completed(sqlite_store, cfg, 1000.0, device=gpu, world_size=8)
    todo = planned_run(cfg.model_copy(update={"seed": 7}))
    slurm = SlurmConfig(nodes=2, gpus_per_node=4)
    [e] = est.estimate_runs([todo], sqlite_store.runs(status="completed"), executor="slurm", slurm=slurm)
    assert e.target.gpus == 8 and e.target.world_size == 8
    per_epoch = est.images_per_epoch(1437, cfg, 8)
    assert e.wall_s == pytest.approx(24 * per_epoch / 1000.0)
    assert e.gpu_h == pytest.approx(e.wall_s * 8 / 3600)
    [local] = est.estimate_runs([todo], sqlite_store.runs(status="completed"), executor="local", gpu_name=gpu)
    assert local.gpu_h is None and "speed unknown" in local.basis  # one process here, eight measured
    # a run of 8 local GPUs: one process each, and its GPU-hours are its wall time × 8
    local8 = planned_run(cfg.model_copy(update={"seed": 7, "gpus": 8}))
    [e8] = est.estimate_runs([local8], sqlite_store.runs(status="completed"), executor="local", gpu_name=gpu)
    assert e8.target.gpus == 8 and e8.target.world_size == 8
    assert e8.wall_s == pytest.approx(e.wall_s) and e8.gpu_h == pytest.approx(e8.wall_s * 8 / 3600)


def test_a_machine_of_gpus_whose_name_is_unknown_here_is_still_a_gpu_target(monkeypatch):
    monkeypatch.setattr(est, "local_gpu_name", lambda: None)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    target = est.target_for("local", False, processes=4)
    assert (target.device, target.gpus, target.world_size) == (None, 4, 4)
    assert "this machine's GPUs, 4 GPUs and 4 processes per run" in target.describe
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert est.target_for("local", False).device.startswith("cpu")


def test_the_cores_are_split_between_the_runs_that_train_at_once_not_the_slots(monkeypatch, sqlite_store):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    one = [type("Entry", (), {"run": planned_run(config()), "state": "to_run"})()]
    # --max-parallel 8 (one per core by default) but a single run to train: it takes every core
    assert "cpu (8 threads)" in est.dry_run_estimate(one, None, "local", max_parallel=8)


def test_wall_time_scales_by_the_basis_runs_wall_over_training_ratio():
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    cfg = config()
    record = RunRecord(hash="a" * 64, spec="cost", variant="v", label="v", coords={}, seed=0, profile=None,
                       status="completed", config=cfg.as_json(), final={"train_img_s": 100.0, "train_time_s": 80.0},
                       info={"device": CPU, "world_size": "1"}, epoch=23, started_at=start,
                       ended_at=start + timedelta(seconds=100), heartbeat_at=None, host=None, error=None,
                       job_id=None, log_path=None)
    target = est.target_for("local", True)
    speed = est.measured_speed(est.speed_key(cfg.as_json()), target, [record])
    assert speed.wall_ratio == pytest.approx(1.25) and "wall = training × 1.25" in speed.basis
    e = est.estimate_run(planned_run(cfg), speed, target)
    assert e.wall_s == pytest.approx(e.train_s * 1.25)


def test_a_plan_with_no_basis_says_so(sqlite_store):
    completed(sqlite_store, config(seed=1), 100.0)
    other = planned_run(config(**{"model.name": "deit_small_patch4_32"}))
    [e] = est.estimate_runs([other], sqlite_store.runs(status="completed"), executor="local")
    assert e.wall_s is None and e.gpu_h is None
    assert e.basis.startswith("speed unknown: the store holds no completed run of deit_small_patch4_32")
    assert "--probe" in e.basis
    text = est.format_estimates([e])
    assert "no estimate: the run's speed is unknown" in text and "        ?" in text and "0:00:00" not in text
    unknown = planned_run(config(**{"data.name": "imagefolder", "data.root": "/nowhere"}, seed=1))
    [e] = est.estimate_runs([unknown], [], executor="local", probe=False)
    assert e.wall_s is None and e.basis.startswith("speed unknown") and e.size_basis.endswith("/nowhere unknown here")


@pytest.fixture
def brief_probe(monkeypatch):
    """A probe that times half a second of steps, not three: what these tests check does not depend on how long
    (tests/test_what_users_see.py checks the full probe's seconds)."""
    from harness.launch import probe

    monkeypatch.setattr(probe, "probe", functools.partial(probe.probe, min_seconds=0.5))


def test_probe_times_a_few_steps_of_a_tiny_model(brief_probe):
    todo = planned_run(config(**{"model.distillation_token": True}))
    [e] = est.estimate_runs([todo], [], executor="local", probe=True)
    assert e.wall_s is not None and e.wall_s > 0 and e.gpu_h == 0.0
    assert "img/s timed here: deit_tiny_patch4_32 + distillation token, 16 px, batch 64" in e.basis
    shown = float(e.basis.removeprefix("~").split(" img/s")[0])  # rounded to the digits the probe's spread allows
    assert e.train_s == pytest.approx(24 * 1408 / shown, rel=0.5 * 10 ** (1 - est.digits(e.spread)) + 1e-3)


def test_the_probe_says_what_it_costs_before_it_starts_and_the_hint_says_it_too(monkeypatch, capsys):
    """A probe of the paper's batch on a busy CPU takes a minute a model, not 'a few seconds': the hint that
    proposes it and each probe as it starts say so (the probe itself is faked here: its cost is not the test's)."""
    from harness.launch import probe as probing

    monkeypatch.setattr(probing, "probe", lambda *a, **k: probing.Probe(img_s=100.0, steps=5, seconds=3.0, spread=0.1))
    [hinted] = est.estimate_runs([planned_run(config())], [], executor="local")
    assert "add --probe to time its training here (7 training steps and at least 3 s a model: seconds on a GPU, " \
           "minutes a model on a busy CPU)" in hinted.basis, hinted.basis
    [e] = est.estimate_runs([planned_run(config())], [], executor="local", probe=True)
    assert e.wall_s is not None
    assert capsys.readouterr().err.startswith("harness: timing deit_tiny_patch4_32, 16 px, batch 64")


@pytest.mark.slow
def test_the_probe_times_a_compiled_run_uncompiled_and_says_so(monkeypatch, brief_probe):
    import torch

    def no_compiling(*_args, **_kwargs):
        raise AssertionError("the probe compiled the model on the planning machine")

    monkeypatch.setattr(torch, "compile", no_compiling)
    todo = planned_run(config(compile=True))
    [e] = est.estimate_runs([todo], [], executor="local", probe=True)
    assert e.wall_s is not None and "without torch.compile, which the run uses" in e.basis, e.basis
    [plain] = est.estimate_runs([planned_run(config())], [], executor="local", probe=True)
    assert "torch.compile" not in plain.basis


# ---------------------------------------------------------------------------------------------------------------
# a running run's remaining time


def test_status_shows_remaining_time_from_the_runs_own_epoch_speed(sqlite_store, capsys):
    from harness.cli.tables import status_table
    from harness.launch.status import statuses

    cfg = config(**{"schedule.epochs": 12})
    run = planned_run(cfg)
    sqlite_store.register_experiment("cost", "name: cost\n", "cost.yaml")
    sqlite_store.register_runs("cost", [run])
    drive(sqlite_store, run.hash, "running")
    for epoch, img_s in enumerate([50.0, 100.0, 100.0, 200.0]):
        sqlite_store.log_epoch(run.hash, epoch, {"train_img_s": img_s, "top1": 10.0})
    assert sqlite_store.heartbeat(run.hash, TEST_OWNER.token, epoch=3)
    [row] = statuses(sqlite_store, "cost")
    # 8 epochs left, 1408 images each, at the mean of the last three epochs' speed
    assert row.remaining_s == pytest.approx(8 * 1408 / (400.0 / 3))
    status_table([row])
    printed = capsys.readouterr().out
    assert est.clock(row.remaining_s) in printed and "left" in printed
    assert sqlite_store.finish(run.hash, TEST_OWNER.token, "completed")
    assert statuses(sqlite_store, "cost")[0].remaining_s is None


def test_remaining_time_without_a_known_dataset_size_uses_elapsed_time():
    cfg = config(**{"data.name": "imagefolder", "data.root": "/nowhere", "schedule.epochs": 10})
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    record = RunRecord(hash="b" * 64, spec="cost", variant="v", label="v", coords={}, seed=0, profile=None,
                       status="running", config=cfg.as_json(), final={}, info={}, epoch=1, started_at=start,
                       ended_at=None, heartbeat_at=None, host=None, error=None, job_id=None, log_path=None)
    assert est.remaining_s(record, [100.0], now=start + timedelta(seconds=60)) == pytest.approx(8 * 30.0)
    assert est.remaining_s(replace(record, status="requeued"), [100.0]) is None


# ---------------------------------------------------------------------------------------------------------------
# the dry run


@pytest.mark.slow
def test_dry_run_prints_the_estimate_and_its_basis(sqlite_store, sqlite_url, tmp_path):
    from test_report_helpers import fill

    from harness import paths
    from harness.store.records import FileRecord

    # hard distillation failed, to run again: soft distillation's speed is its basis
    runs = fill(sqlite_store, "distillation", "quick", lambda run: {"top1": 50.0},
                ending=lambda run: "failed" if run.variant == "hard_distillation" else "completed")
    for run in runs:
        # a completed teacher published its weights, which the student to run again will load
        sqlite_store.log_final(run.hash, {"train_img_s": 500.0, "train_time_s": 60.0},
                              {"device": CPU, "world_size": "1"}, files={"model": FileRecord(paths.MODEL, "0" * 64)})
        weights = paths.run_dir(tmp_path, run.hash) / paths.MODEL
        weights.parent.mkdir(parents=True, exist_ok=True)
        weights.touch()
    runner = CliRunner()
    args = ["run", "ablations/distillation.yaml", "--profile", "quick", "--dry-run", "--executor", "local",
            "--db", sqlite_url, "--output", str(tmp_path)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "Estimate on the local executor" in res.stderr and "500 img/s measured by" in res.stderr
    assert "1 of 1 run estimated" in res.stderr and "4 done or in flight, 1 to run" in res.stdout
    # the small profile trains at batch 128: nothing stored measures it, until the probe times it
    small = ["run", "ablations/distillation.yaml", "--profile", "small", "--dry-run", "--executor", "local",
             "--db", sqlite_url, "--output", str(tmp_path)]
    res = runner.invoke(app, small)
    assert res.exit_code == 0
    assert "speed unknown: the store holds no completed run of resnet_tiny_32, 16 px, batch 128" in res.stderr
    assert "no estimate: the speed of the 13 runs is unknown" in res.stderr
    # --max-parallel 2: one thread a probe, quicker on a busy machine
    res = runner.invoke(app, small + ["--probe", "--max-parallel", "2"])
    assert res.exit_code == 0, res.output
    assert "13 of 13 runs estimated" in res.stderr and res.stderr.count("img/s timed here") == 4
    assert "fashion_mnist: 60000 training images, subset 6000" in res.stderr
