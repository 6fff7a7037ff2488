"""Gradient accumulation: how many micro-batches one optimizer step of a process takes.

`batch_size` stays the recipe's total (its learning-rate scaling, Mixup/CutMix pairs, EMA steps): each process
takes its share as one batch from its sampler, mixes it whole, then runs forward and backward over
`accumulation` equal slices of it before the one optimizer step (`harness.trainer.loop.train_step`). A model
with batch norm sees each slice's statistics, as it would on a smaller card.

`accumulation_steps: auto` finds, on a GPU, the largest slice that divides the process's batch whose forward and
backward fit in memory beside the optimizer's state, the whole batch and a margin (a short probe of the run's own model, loss and precision on
random images); on a CPU it is 1.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from harness.trainer import distributed


# share of the card's memory the probe leaves free (the allocator's fragmentation over a long run)
MARGIN = 0.05


def divisors(n: int) -> list[int]:
    """The divisors of n, largest first."""
    small = [d for d in range(1, int(n**0.5) + 1) if n % d == 0]
    return sorted({*small, *(n // d for d in small)}, reverse=True)


def choose(per_device: int, fits: Callable[[int], bool]) -> int:
    """The fewest micro-batches of a process's batch of `per_device` whose slice (per_device // steps) `fits`."""
    for micro in divisors(per_device):
        if fits(micro):
            return per_device // micro
    raise RuntimeError(f"not even one image of the batch of {per_device} fits on the device")


def probe(run, num_classes: int, img_size: int):
    """`fits(micro)` for `choose`: a forward and backward pass of `run`'s model and loss over `micro` random
    images under the run's autocast, with room held for the optimizer's state; False on CUDA out-of-memory.
    The random streams are left as they were, and the gradients empty."""
    params = [p for p in run.model.parameters() if p.requires_grad]
    whole = run.config.batch_size // run.env.world_size
    # batch norm's running statistics would learn from the probe's random images: put back after each try
    buffers = {name: b.clone() for name, b in run.model.named_buffers()}

    def fits(micro: int) -> bool:
        held: list[torch.Tensor] = []
        try:
            with torch.random.fork_rng(devices=[run.device] if run.device.type == "cuda" else []):
                # AdamW keeps two tensors per parameter, made at the first step; training holds the process's
                # whole batch and its mixed copy beside each slice; and a margin for fragmentation: hold it all
                held = [torch.empty_like(p) for p in params for _ in range(2)]
                held += [torch.empty(whole, 3, img_size, img_size, device=run.device) for _ in range(2)]
                if run.device.type == "cuda":
                    margin = int(MARGIN * torch.cuda.get_device_properties(run.device).total_memory)
                    held.append(torch.empty(margin, dtype=torch.uint8, device=run.device))
                images = torch.randn(micro, 3, img_size, img_size, device=run.device)
                labels = torch.randint(0, num_classes, (micro,), device=run.device)
                targets = F.one_hot(labels, num_classes).float() if run.mixup is not None else labels
                run.model.train()
                with run.autocast():
                    loss = run.criterion(images, run.model(images), targets)
                loss.backward()
                if run.device.type == "cuda":
                    torch.cuda.synchronize(run.device)
            return True
        except torch.cuda.OutOfMemoryError:
            return False
        finally:
            held = []
            run.model.zero_grad(set_to_none=True)
            with torch.no_grad():
                for name, value in run.model.named_buffers():
                    value.copy_(buffers[name])
            torch.cuda.empty_cache()

    return fits


def agree(steps: int, device: torch.device) -> int:
    """The most steps any process chose, for all of them (one card with less free memory sets the pace)."""
    if distributed.world_size() == 1:
        return steps
    value = torch.tensor([steps], device=device)
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return int(value.item())


def slices(images: torch.Tensor, targets: torch.Tensor, steps: int):
    """(images, targets, weight) of each micro-batch; weight: its share of the batch, by which its mean loss is
    scaled so that the accumulated gradient is the whole batch's mean."""
    total = images.shape[0]
    for x, y in zip(images.tensor_split(steps), targets.tensor_split(steps)):
        if x.shape[0]:
            yield x, y, x.shape[0] / total
