"""Several processes for one run: DDP when a job has several tasks.

The task layout comes from torchrun's variables (WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR/PORT) or, inside a
submitit job, from submitit's job environment. NCCL on GPUs, gloo on CPUs. With one task everything here is a
no-op, so the single-process path has no distributed code in it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import timedelta

import submitit
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from harness.config import RunConfig


@dataclass(frozen=True)
class DistEnv:
    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    # True when this run initialised the process group (and so must destroy it)
    owns_group: bool = False


def detect() -> tuple[int, int, int]:
    """(world_size, rank, local_rank) of this process, exporting torch's env:// variables for submitit jobs."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return int(os.environ["WORLD_SIZE"]), int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0))
    if os.environ.get("SUBMITIT_EXECUTOR"):
        job_env = submitit.JobEnvironment()
        if job_env.num_tasks > 1:
            tde = submitit.helpers.TorchDistributedEnvironment()
            tde.export(set_cuda_visible_devices=False, overwrite=True)
            return tde.world_size, tde.rank, tde.local_rank
    return 1, 0, 0


def setup(config: RunConfig) -> DistEnv:
    world, rank, local_rank = detect()
    if world == 1:
        return DistEnv()
    if dist.is_initialized():
        return DistEnv(dist.get_world_size(), dist.get_rank(), local_rank, owns_group=False)
    use_cuda = config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend, init_method="env://", world_size=world, rank=rank, timeout=timedelta(minutes=30))
    return DistEnv(world, rank, local_rank, owns_group=True)


def cleanup(env: DistEnv) -> None:
    if env.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def wrap(model: nn.Module, env: DistEnv, device: torch.device, find_unused: bool = False) -> nn.Module:
    """DDP around the model for several processes; the model itself for one. `find_unused`: some parameters get
    no gradient (a distillation-token model trained without distillation leaves its distillation head unused)."""
    if env.world_size == 1:
        return model

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused)


def weights_digest(model: nn.Module) -> str:
    """SHA-256 of the model's weights: equal in every process of a run that DDP kept in step."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def mean(value: torch.Tensor) -> torch.Tensor:
    if world_size() == 1:
        return value
    value = value.detach().clone().float()
    dist.all_reduce(value)
    return value / world_size()


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def gather_objects(obj) -> list:
    """Every process's `obj`, in rank order ([obj] in one process)."""
    if world_size() == 1:
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def from_first(obj):
    """Process 0's `obj`, in every process."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_shards(per_image: dict[str, torch.Tensor], shard) -> dict[str, torch.Tensor]:
    """Per-image results of every process's shard of the val set, put back in val-set order."""
    parts = gather_objects((torch.as_tensor(shard), per_image))
    index = torch.cat([p[0] for p in parts])
    order = torch.argsort(index)
    return {key: torch.cat([p[1][key] for p in parts])[order] for key in per_image}


def shared_stop(reason: str | None, device: torch.device) -> str | None:
    """A reason to stop that any process holds, known to all of them (the reason itself in one process)."""
    if world_size() == 1:
        return reason
    flag = torch.tensor([1.0 if reason else 0.0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    if flag.item() > 0:
        return reason or "another process of the run was told to stop"
    return None
