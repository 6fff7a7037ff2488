"""The training switches for speed: `compile`, `optimizer.fused` and `channels_last`. Each is part of the run's
config and hash; a compiled run keeps plain weights that an uncompiled process resumes and evaluates alike."""

import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from harness.config import run_hash
from harness.trainer import distributed
from harness.trainer.checkpoint import CHECKPOINT
from harness.trainer.loop import build_run
from tests.test_trainer import make_config, run

REPO = Path(__file__).resolve().parent.parent


def test_each_switch_is_off_by_default_and_changes_the_hash():
    base = make_config()
    assert (base.compile, base.optimizer.fused, base.channels_last) == (False, False, False)
    hashes = {run_hash(base), run_hash(make_config(compile=True)),
              run_hash(make_config(optimizer={"fused": True})), run_hash(make_config(channels_last=True))}
    assert len(hashes) == 4


@pytest.mark.slow
def test_switches_reach_the_model_the_optimizer_and_the_teacher(tmp_path):
    teacher_dir = tmp_path / "teacher"
    run(make_config(model={"name": "resnet_tiny_32", "drop_path": 0.0}), teacher_dir)
    teacher = {"model": "resnet_tiny_32", "checkpoint": str(teacher_dir / "model.pt")}
    config = make_config(model={"name": "deit_tiny_patch4_32"}, compile=True, channels_last=True,
                         optimizer={"fused": True}, distillation={"kind": "hard", "teacher": teacher})
    r, t = build_run(config, distributed.DistEnv(), lambda h: None, {})
    assert isinstance(r.train_model, torch._dynamo.eval_frame.OptimizedModule)
    assert r.train_model._orig_mod is r.model and not isinstance(r.model, torch._dynamo.eval_frame.OptimizedModule)
    assert r.optimizer.defaults["fused"] is True  # CPUs have fused AdamW in torch >= 2.4
    convs = [m.weight for m in t.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous() for w in convs)

    plain, _ = build_run(make_config(model={"name": "deit_tiny_patch4_32"}), distributed.DistEnv(), lambda h: None, {})
    assert plain.train_model is plain.model and not plain.optimizer.defaults.get("fused")


# evaluates the checkpoint of a run in this process, without compile: the top-1 as JSON on stdout
EVALUATE_UNCOMPILED = """
import json, sys
from pathlib import Path
import torch
torch.set_num_threads(1)
from harness.config import RunConfig
from harness.trainer import distributed
from harness.trainer.checkpoint import resume
from harness.trainer.loop import build_run
config = RunConfig.model_validate_json(sys.argv[1])
assert not config.compile
r, _ = build_run(config, distributed.DistEnv(), lambda h: None, {})
progress = resume(Path(sys.argv[2]), r.model, r.optimizer, r.scheduler, r.ema, 0)
print(json.dumps({"next_epoch": progress.next_epoch, "top1": r.evaluate(r.model).metrics["top1"],
                  "ema_top1": r.evaluate(r.ema.module, prefix="ema_").metrics["ema_top1"]}))
"""


@pytest.mark.slow
def test_a_compiled_runs_checkpoint_resumes_uncompiled_with_the_same_top1(tmp_path):
    # compiling takes the first step tens of seconds on a CPU; the run is as small as a run gets
    config = make_config(model={"name": "deit_tiny_patch4_32", "drop_path": 0.0}, compile=True,
                         ema={"enabled": True, "decay": 0.5}, data={"train_subset": 64})
    sink, _ = run(config, tmp_path / "compiled")
    state = torch.load(tmp_path / "compiled" / CHECKPOINT, weights_only=False)
    assert not any("_orig_mod" in k for k in state["model"]), "the checkpoint holds the compiled wrapper's names"
    uncompiled = config.model_copy(update={"compile": False})
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", EVALUATE_UNCOMPILED, uncompiled.model_dump_json(),
                           str(tmp_path / "compiled" / CHECKPOINT)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    again = json.loads(done.stdout.strip().splitlines()[-1])
    assert again["next_epoch"] == 1
    assert again["top1"] == sink.epochs[0]["top1"]
    assert again["ema_top1"] == sink.epochs[0]["ema_top1"]


def test_switches_are_on_at_paper_scale_and_off_in_the_cpu_profiles():
    from harness.spec import expand, load_spec, validate_profiles

    for path in sorted((REPO / "ablations").glob("*.yaml")):
        loaded = load_spec(path)
        validate_profiles(loaded)
        for profile in [None, *loaded.spec.profiles]:
            for planned in expand(loaded, profile):
                c = planned.config
                switches = (c.compile, c.optimizer.fused, c.channels_last)
                if c.device == "cpu":
                    assert switches == (False, False, False), (path.name, profile, planned.variant)
                else:
                    assert switches == (True, True, True), (path.name, profile, planned.variant)
