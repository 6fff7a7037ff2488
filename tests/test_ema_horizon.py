"""EMA at any scale: every shipped spec's EMA forgets its random start by the end of training.

An EMA with per-step decay d keeps d ** steps of the weights it started from. The paper's 0.99996 over its 300
ImageNet epochs (375,300 steps at batch 1024) keeps exp(-15); over a small profile's 160 steps it would keep
99%, so those profiles give the decay as a horizon in epochs (`ema.horizon_epochs`), converted by the trainer
with the run's own steps per epoch.
"""

import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path

import pytest
import torch

from harness.config import RunConfig
from harness.launch.estimate import images_per_epoch, train_set_size
from harness.spec.errors import SpecError
from harness.spec.expand import expand
from harness.spec.load import load_spec
from harness.trainer.distributed import DistEnv
from harness.trainer.loop import build_run

torch.set_num_threads(1)

SPECS = sorted((Path(__file__).parent.parent / "ablations").glob("*.yaml"))
# ImageNet-1k's training images: the paper-scale specs' imagefolder, absent on this machine
IMAGENET_ROOT, IMAGENET_TRAIN = "/datasets/imagenet", 1_281_167
# the most of the random start the EMA may still hold at the end of training
MOST_OF_THE_START = 0.01


def steps_per_epoch(config: RunConfig) -> int:
    size, how = train_set_size(config)
    if size is None:
        assert config.data.root == IMAGENET_ROOT, f"training-set size unknown: {how}"
        size = IMAGENET_TRAIN
    return images_per_epoch(size, config) // config.batch_size


def shipped_runs():
    for path in SPECS:
        loaded = load_spec(path)
        for profile in [None, *loaded.spec.profiles]:
            try:
                runs = expand(loaded, profile)
            except SpecError as exc:
                if exc.message == "the spec expands to no runs":
                    continue
                raise
            for run in runs:
                yield path.name, profile, run


EMA_FROM_RANDOM = [(name, profile, run) for name, profile, run in shipped_runs()
                   if run.config.ema.enabled and run.config.finetune is None]


def left_of_the_start(config: RunConfig) -> float:
    steps = steps_per_epoch(config)
    return config.ema.step_decay(steps) ** (steps * config.schedule.epochs)


@pytest.mark.parametrize("name,profile,run", EMA_FROM_RANDOM,
                         ids=[f"{n}-{p or 'paper'}-{r.variant}-{r.seed}" for n, p, r in EMA_FROM_RANDOM])
def test_every_shipped_ema_forgets_its_random_start(name, profile, run):
    # fine-tunes are left out: their EMA starts from trained weights (the paper's ↑384 runs keep 0.99996)
    assert left_of_the_start(run.config) <= MOST_OF_THE_START, (
        f"{name} profile {profile}: {run.describe()} keeps {left_of_the_start(run.config):.0%} of its random start")


def test_the_check_covers_paper_scale_and_the_small_profiles():
    by_profile = {profile: run for _, profile, run in EMA_FROM_RANDOM}
    assert {None, "small"} <= set(by_profile)
    paper = by_profile[None].config
    # paper scale keeps the paper's decay, and it is fine there: exp(-15) of the start is left
    assert paper.ema.decay == 0.99996 and paper.ema.horizon_epochs is None
    assert steps_per_epoch(paper) == 1251 and left_of_the_start(paper) < 1e-6
    # the paper's decay on the small profile would have kept nearly all of the random start
    small = by_profile["small"].config
    paper_decay = small.model_copy(update={"ema": small.ema.model_copy(update={"horizon_epochs": None})})
    assert left_of_the_start(paper_decay) > 0.99


def test_horizon_is_converted_with_the_runs_steps_per_epoch():
    config = RunConfig.model_validate({
        "model": {"name": "deit_tiny_patch4_32"},
        "data": {"name": "digits", "img_size": 16, "num_workers": 0, "train_subset": 200},
        "ema": {"enabled": True, "horizon_epochs": 0.5},
        "batch_size": 32, "device": "cpu", "throughput": {"protocols": []},
    })
    run, _ = build_run(config, DistEnv(), lambda h: Path(h), {})
    steps = len(run.train_loader)
    # repeated augmentation keeps 200 images an epoch: 6 full batches of 32
    assert steps == steps_per_epoch(config) == 6
    assert run.ema.decay == pytest.approx(math.exp(-1 / (0.5 * 6)))
    assert config.ema.step_decay(6) ** (6 * 2) == pytest.approx(math.exp(-4))
    without = config.model_copy(update={"ema": config.ema.model_copy(update={"horizon_epochs": None})})
    assert without.ema.step_decay(6) == 0.99996


def test_horizon_is_part_of_the_config_and_its_hash():
    from harness.config import run_hash

    a = RunConfig.model_validate({"ema": {"enabled": True}})
    b = RunConfig.model_validate({"ema": {"enabled": True, "horizon_epochs": 2.0}})
    assert run_hash(a) != run_hash(b)
    with pytest.raises(ValueError):
        RunConfig.model_validate({"ema": {"horizon_epochs": 0.0}})
