"""Two CPU processes on gloo: DDP training, the distributed repeated-augmentation sampler, gathered evaluation."""

import json
import os
import socket

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
import torch.multiprocessing as mp

from harness.trainer.loaders import SeededRepeatAugSampler

# two-process DDP training: the full suite's, not the fast lane's
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from harness.trainer import distributed, train
    from harness.trainer.sink import MemorySink
    from tests.test_trainer import make_config

    # this process's model as built (each rank seeds its own) and as trained: only rank 0 saves its weights
    seen = {}
    wrap = distributed.wrap

    def keep(model, *args, **kwargs):
        seen.update(model=model, initial={k: v.clone() for k, v in model.state_dict().items()})
        seen["wrapped"] = wrap(model, *args, **kwargs)
        return seen["wrapped"]

    distributed.wrap = keep
    config = make_config(model={"name": "deit_tiny_patch4_32"}, data={"train_subset": 64},
                         augment={"repeated_aug": True}, batch_size=32)
    sink = MemorySink()
    final = train(config, os.path.join(out, "run"), sink, lambda h: None)
    torch.save({"initial": seen["initial"], "trained": seen["model"].state_dict()}, os.path.join(out, f"rank{rank}.pt"))
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump({"final": final, "epochs": list(sink.epochs), "wrapped": type(seen["wrapped"]).__name__,
                   "predictions": {k: v.tolist() for k, v in sink.predictions.items()}}, f)


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_two_processes_on_gloo(tmp_path):
    mp.spawn(worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0["wrapped"] == r1["wrapped"] == "DistributedDataParallel"
    assert r0["epochs"] == [0] and r1["epochs"] == []  # only rank 0 reports
    assert r0["final"]["top1"] == r1["final"]["top1"]  # both see the gathered evaluation
    assert r0["final"]["train_loss"] == r1["final"]["train_loss"]  # the mean over both processes' batches
    assert len(r0["predictions"]["cls"]) == 360 and len(r0["predictions"]["target"]) == 360
    assert (tmp_path / "run" / "model.pt").exists()
    w0, w1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    # the ranks start from different weights and end with the same ones: DDP gave both rank 0's weights and
    # averaged their gradients at every step
    assert not same(w0["initial"], w1["initial"])
    assert same(w0["trained"], w1["trained"]) and not same(w0["trained"], w0["initial"])


def test_distributed_repeated_augmentation_sampler_spreads_repeats_over_ranks():
    data = list(range(12))
    shards = []
    for rank in range(2):
        s = SeededRepeatAugSampler(data, num_replicas=2, rank=rank, num_repeats=3, seed=0)
        s.set_epoch(0)
        shards.append(list(s))
    assert len(shards[0]) == len(shards[1]) == 6
    # each image's three augmented copies are spread over the processes
    assert shards[0][0] == shards[1][0] == shards[0][1]


def test_task_layout_from_submitit_and_torchrun():
    from harness.trainer import distributed

    before = dict(os.environ)
    with pytest.MonkeyPatch.context() as monkeypatch:
        # set, then deleted: monkeypatch then restores each to its state before the test, even when detect()
        # exports it
        for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                    "SUBMITIT_EXECUTOR"):
            monkeypatch.setenv(var, "unset")
            monkeypatch.delenv(var)
        assert distributed.detect() == (1, 0, 0)
        # a 2-task job of submitit's local executor, seen from its second task
        monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")
        for var, value in {"SUBMITIT_LOCAL_NTASKS": "2", "SUBMITIT_LOCAL_GLOBALID": "1", "SUBMITIT_LOCAL_LOCALID": "1",
                           "SUBMITIT_LOCAL_JOB_ID": "123", "SUBMITIT_LOCAL_NODEID": "0",
                           "SUBMITIT_LOCAL_JOB_NUM_NODES": "1"}.items():
            monkeypatch.setenv(var, value)
        assert distributed.detect() == (2, 1, 1)
        assert os.environ["WORLD_SIZE"] == "2" and os.environ["RANK"] == "1" and os.environ["MASTER_PORT"]
        # torchrun's variables take precedence
        monkeypatch.setenv("WORLD_SIZE", "4")
        monkeypatch.setenv("RANK", "3")
        monkeypatch.setenv("LOCAL_RANK", "1")
        assert distributed.detect() == (4, 3, 1)
    # nothing of the layouts above is left for the tests after this one (a WORLD_SIZE of 2 would make every
    # later run wait for a second process)
    assert dict(os.environ) == before and os.environ.get("WORLD_SIZE") in (None, "1")


def ema_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from harness.trainer import loop, train
    from harness.trainer.sink import MemorySink
    from tests.test_trainer import make_config

    runs = []
    assemble = loop.assemble
    loop.assemble = lambda *a, **k: runs.append(assemble(*a, **k)) or runs[-1]
    # two micro-batches a step: gradients are exchanged only after the second (no_sync before it)
    config = make_config(model={"name": "deit_tiny_patch4_32"}, data={"train_subset": 64},
                         ema={"enabled": True, "decay": 0.99}, batch_size=32, accumulation_steps=2)
    sink = MemorySink()
    final = train(config, os.path.join(out, "run"), sink, lambda h: None)
    run = runs[0]
    torch.save({"ema": run.ema.module.state_dict(), "trained": run.model.state_dict(),
                "ema_top1": final["ema_top1"], "accumulation": run.accumulation}, os.path.join(out, f"ema{rank}.pt"))


@pytest.mark.slow
def test_every_rank_keeps_rank_0s_ema(tmp_path):
    mp.spawn(ema_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = torch.load(tmp_path / "ema0.pt"), torch.load(tmp_path / "ema1.pt")
    assert r0["accumulation"] == r1["accumulation"] == 2
    assert same(r0["trained"], r1["trained"])
    # the EMA starts from the weights DDP broadcast, not from each rank's own initial draw
    assert same(r0["ema"], r1["ema"])
    assert r0["ema_top1"] == r1["ema_top1"]
