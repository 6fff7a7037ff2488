"""Mixed precision (harness.trainer.precision): fp16 autocast with a gradient scaler trains and resumes on a CPU
(torch's CPU autocast takes float16), `auto` resolves by device, and the run records what it trained in."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from harness.config import RunConfig, run_hash
from harness.trainer import precision, train
from harness.trainer.checkpoint import CHECKPOINT, resume
from tests.test_trainer import make_config, run
from tests.test_trainer_resume import Interrupt, InterruptingSink


@pytest.mark.slow
def test_fp16_with_a_grad_scaler_trains_and_resumes_on_cpu(tmp_path):
    config = make_config(model={"name": "deit_tiny_patch4_32"}, schedule={"epochs": 3, "warmup_epochs": 1},
                         data={"train_subset": 32}, batch_size=16, precision="fp16", accumulation_steps=2)
    straight, final = run(config, tmp_path / "straight")
    assert straight.info["precision"] == "fp16"
    assert (straight.info["micro_batch"], straight.info["accumulation_steps"]) == ("8", "2")
    assert torch.isfinite(torch.tensor(final["train_loss"]))
    saved = torch.load(tmp_path / "straight" / CHECKPOINT, weights_only=True)
    assert saved["scaler"] is not None and saved["scaler"]["scale"] > 0

    sink = InterruptingSink(at=2)
    with pytest.raises(Interrupt):
        train(config, tmp_path / "resumed", sink, lambda h: None)
    resumed, _ = run(config, tmp_path / "resumed")
    a = torch.load(tmp_path / "straight" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.final["train_loss"] == straight.final["train_loss"]


def test_the_scaler_state_goes_into_the_checkpoint_and_comes_back(tmp_path):
    config = make_config(model={"name": "deit_tiny_patch4_32"}, data={"train_subset": 32}, batch_size=16,
                         precision="fp16")
    run(config, tmp_path)
    saved = torch.load(tmp_path / CHECKPOINT, weights_only=True)["scaler"]
    # a scaler that backed off after an overflow must resume at its backed-off scale, not at the initial one
    ckpt = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    ckpt["scaler"] = {**saved, "scale": 0.125, "_growth_tracker": 7}
    torch.save(ckpt, tmp_path / CHECKPOINT)
    from harness.trainer.models import build_student
    from harness.trainer.optim import build_optimizer, build_scheduler

    model = build_student(config, 10, lambda h: None)
    optimizer = build_optimizer(config, model)
    scaler = torch.amp.GradScaler("cpu")
    resume(tmp_path / CHECKPOINT, model, optimizer, build_scheduler(config, optimizer), None, 0, scaler)
    assert scaler.get_scale() == 0.125 and scaler.state_dict()["_growth_tracker"] == 7


def test_auto_is_bf16_where_the_gpu_has_it_else_fp16_and_fp32_on_a_cpu(monkeypatch):
    auto = RunConfig(precision="auto")
    assert precision.resolve(auto, torch.device("cpu")) == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert precision.resolve(auto, torch.device("cuda", 0)) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert precision.resolve(auto, torch.device("cuda", 0)) == "fp16"
    assert precision.resolve(RunConfig(precision="fp16"), torch.device("cpu")) == "fp16"
    assert precision.scaler("fp16", torch.device("cpu")) is not None
    assert precision.scaler("bf16", torch.device("cpu")) is None
    # the default stays fp32, so the hashes of stored runs do not move
    assert RunConfig().precision == "fp32" and run_hash(RunConfig()) == run_hash(RunConfig(precision="fp32"))
