"""The per-device plan (harness/launch/memory.py): the meta forward's activation count against a real forward,
DeiT-B at the recipe's batch on an 80 GiB card, and the dry run on a (faked) 8-GPU workstation."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.config import RunConfig
from harness.launch import memory

EIGHT_GPUS = {"CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7", memory.ENV: "80", "HARNESS_DB": ""}


@pytest.mark.parametrize("name, size", [("deit_tiny_patch4_32", 16), ("resnet_tiny_32", 32),
                                        ("deit_small_patch16_224", 64)])
def test_the_meta_forward_counts_what_a_real_forward_saves_for_backward(name, size):
    import torch

    from harness.trainer.models import create_model

    config = RunConfig(model={"name": name}, data={"name": "digits", "img_size": size}, batch_size=64, device="cpu")
    key = memory._student_key(config)
    model = create_model(*key).train()
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(torch.randn(memory.PROBE_IMAGES, 3, size, size))
    real = sum(saved.values())
    # the meta device cannot tell tensors sharing memory apart as well: it may count a little more, never less
    assert real <= memory._saved_bytes(key, "fp32") <= 1.05 * real


def fixed(state_gib: float, image_mib: float):
    return lambda config: memory.Footprint(state_gib * memory.GIB, image_mib * 2**20)


def test_a_plan_takes_the_fewest_micro_batches_that_fit_under_auto_and_refuses_a_fixed_one_that_does_not():
    # 100 MiB an image: 1024 images need ~110 GiB, 512 ~56 GiB, on a 64 GiB card
    auto = memory.plan_run(RunConfig(accumulation_steps="auto"), 64.0, fixed(1.0, 100.0))
    assert (auto.per_device, auto.accumulation, auto.micro_batch, auto.fits) == (1024, 2, 512, True)
    one = memory.plan_run(RunConfig(), 64.0, fixed(1.0, 100.0))
    assert (one.accumulation, one.fits, one.fitting) == (1, False, 2)
    assert "accumulation_steps: 2 (or auto) takes 2 micro-batches of 512" in memory.refusal(one)
    # eight GPUs share the batch: 128 images each fit at once
    eight = memory.plan_run(RunConfig(gpus=8, accumulation_steps="auto"), 64.0, fixed(1.0, 100.0))
    assert (eight.devices, eight.per_device, eight.accumulation) == (8, 128, 1)
    # nothing fits: the plan says so rather than proposing an accumulation
    none = memory.plan_run(RunConfig(accumulation_steps="auto"), 1.0, fixed(2.0, 100.0))
    assert not none.fits and none.fitting is None and "not even one image" in memory.refusal(none)


def test_deit_b_at_the_recipes_batch_does_not_fit_an_80_gib_card_at_once_and_does_in_micro_batches():
    deit_b = RunConfig(model={"name": "deit_base_patch16_224"}, batch_size=1024)
    at_once = memory.plan_run(deit_b, 80.0)
    assert not at_once.fits and at_once.micro_batch == 1024
    auto = memory.plan_run(deit_b.model_copy(update={"accumulation_steps": "auto"}), 80.0)
    assert auto.fits and auto.accumulation > 1 and auto.micro_batch * auto.accumulation == 1024
    # the states of a run of several GPUs hold DDP's gradient buckets too
    fp1, fp8 = memory.footprint(deit_b), memory.footprint(deit_b.model_copy(update={"gpus": 8}))
    assert fp8.state_bytes > fp1.state_bytes and fp8.image_bytes == fp1.image_bytes


WORKSTATION = """
name: workstation
base:
  data: {name: imagefolder, root: ROOT, img_size: 224}
  batch_size: 1024
axes:
  model.name: [deit_small_patch16_224, deit_base_patch16_224]
variants:
  whole_batch: {}
  accumulated:
    set: {accumulation_steps: auto}
  eight_gpus:
    set: {gpus: 8}
"""


def test_the_dry_run_on_an_eight_gpu_workstation_plans_every_run_per_gpu_and_refuses_what_cannot_fit(tmp_path):
    (tmp_path / "imagenet" / "train" / "a").mkdir(parents=True)
    (tmp_path / "imagenet" / "val" / "a").mkdir(parents=True)
    spec = tmp_path / "workstation.yaml"
    spec.write_text(WORKSTATION.replace("ROOT", str(tmp_path / "imagenet")))
    args = ["run", str(spec), "--dry-run", "--executor", "local", "--db", f"sqlite:///{tmp_path / 's.db'}",
            "--output", str(tmp_path / "out")]
    res = CliRunner().invoke(app, args, env=EIGHT_GPUS)
    err = res.stderr
    # every GPU busy: one run on each of the eight, or one run on all eight
    assert "this machine's 8 GPUs of 80 GiB, up to 8 runs at once" in err, err
    lines = {line.split()[0]: line for line in err.splitlines() if "images per step" in line}
    assert len(lines) == 6, err
    by_variant = {}
    for line in res.stdout.splitlines()[:6]:
        short, *_, variant, _, model = line.split()
        by_variant[(variant, model.split("=")[1])] = lines[short]
    deit_b, deit_s = "deit_base_patch16_224", "deit_small_patch16_224"
    assert "1 GPU × 1024 images per step = 1 micro-batch of 1024" in by_variant[("whole_batch", deit_b)]
    assert by_variant[("whole_batch", deit_b)].endswith("DOES NOT FIT")
    assert "1 GPU × 1024 images per step = 2 micro-batches of 512" in by_variant[("accumulated", deit_b)]
    assert "8 GPUs × 128 images per step = 1 micro-batch of 128" in by_variant[("eight_gpus", deit_b)]
    assert not any(line.endswith("DOES NOT FIT") for key, line in by_variant.items() if key != ("whole_batch", deit_b))
    assert "DOES NOT FIT" not in by_variant[("whole_batch", deit_s)]
    # the one run that cannot fit is the one problem: one line, exit 2, with the setting that fits
    assert res.exit_code == 2
    problems = [line for line in err.splitlines() if line.startswith("error: ") and "micro-batch" in line]
    assert len(problems) == 1 and "whole_batch" in problems[0] and "accumulation_steps: 2 (or auto)" in problems[0]
    # the estimate counts each run's GPUs
    assert "8 GPUs and 8 processes per run" in err and "1 GPU and 1 process per run" in err


def test_the_real_launch_refuses_a_run_that_cannot_fit_before_anything_is_written(tmp_path):
    (tmp_path / "imagenet" / "train" / "a").mkdir(parents=True)
    (tmp_path / "imagenet" / "val" / "a").mkdir(parents=True)
    spec = tmp_path / "workstation.yaml"
    spec.write_text(WORKSTATION.replace("ROOT", str(tmp_path / "imagenet")))
    res = CliRunner().invoke(app, ["run", str(spec), "--variants", "whole_batch", "--executor", "local",
                                   "--output", str(tmp_path / "out")], env=EIGHT_GPUS)
    assert res.exit_code == 2, res.output
    [line] = res.stderr.strip().splitlines()
    assert "deit_base_patch16_224" in line and "accumulation_steps: 2 (or auto)" in line
    assert not (tmp_path / "out").exists()


def test_without_a_gpu_there_is_no_per_device_plan_and_a_bad_memory_setting_is_one_problem(monkeypatch):
    from harness.spec import PlannedRun
    from harness.config import run_hash

    config = RunConfig()
    run = PlannedRun(hash=run_hash(config), config=config, spec="s", profile=None, variant="v", label="v",
                     coords={}, seed=0)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.delenv(memory.ENV, raising=False)
    assert memory.device_plans([run], "local") == ([], [])
    monkeypatch.setenv(memory.ENV, "eighty")
    assert memory.device_plans([run], "local") == ([], [f"{memory.ENV} must be a number of GiB, not 'eighty'"])
    # SLURM's nodes have cards this machine does not know
    monkeypatch.setenv(memory.ENV, "80")
    assert memory.device_plans([run], "slurm") == ([], [])


@pytest.mark.slow  # it builds every model of the spec on the meta device: about a minute on a busy 2-core machine
def test_a_paper_scale_spec_on_an_eight_gpu_workstation_uses_every_gpu_with_the_recipes_batch(tmp_path):
    res = CliRunner().invoke(app, ["run", "ablations/model_size.yaml", "--dry-run", "--executor", "local",
                                   "--output", str(tmp_path / "out")], env=EIGHT_GPUS)
    err = res.stderr
    assert "this machine's 8 GPUs of 80 GiB, up to 8 runs at once" in err, err
    plans = [line for line in err.splitlines() if "images per step" in line]
    assert len(plans) == 8 and not any("DOES NOT FIT" in line for line in plans), plans
    # the 300-epoch runs keep the recipe's 1024 a step, DeiT-B's in micro-batches; the ↑384 fine-tunes their 512
    assert sum("× 1024 images per step" in line for line in plans) == 6
    assert any("1024 images per step = 2 micro-batches of 512" in line for line in plans)
    assert sum("× 512 images per step" in line for line in plans) == 2
    # what stops this dry run here is the missing data and weights, not the GPUs
    assert not any("micro-batch" in line for line in err.splitlines() if line.startswith("error: "))
