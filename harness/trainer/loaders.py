"""Samplers and loaders: repeated augmentation, shards for several processes, in-memory or worker loaders."""

from __future__ import annotations

from typing import cast

import numpy as np
import torch
from timm.data.distributed_sampler import RepeatAugSampler
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from harness.config import RunConfig
from harness.trainer.batching import BatchTransform, InMemoryLoader
from harness.trainer.datasets import DataSplits, InMemoryImages


def epoch_seed(seed: int, epoch: int) -> int:
    """The shuffle seed of one epoch of one run: (seed, epoch) mixed by numpy's SeedSequence, so that no two
    (seed, epoch) pairs share an order (a plain `seed + epoch` gives seed 0's epoch 1 the order of seed 1's epoch
    0). Changing it changes every run's data order: bump harness.provenance.DATA_ORDER with it."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0] >> 1)


class SeededRepeatAugSampler(RepeatAugSampler):
    """timm's repeated-augmentation sampler (the DeiT reference's RASampler), shuffled by seed and epoch
    (the reference shuffles by epoch alone, so two seeds would see the same order)."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, num_repeats: int, seed: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, num_repeats=num_repeats)
        self.seed = seed

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch_seed(self.seed, epoch)  # timm's sampler seeds its shuffle with `epoch`


class SeededSampler(DistributedSampler):
    """torch's DistributedSampler (a shuffle, sharded over processes), each epoch's order from `epoch_seed`."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=0)
        self.run_seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        # torch shuffles with seed + epoch; its seed is 0 here, so the mixed value alone picks the order
        super().set_epoch(epoch_seed(self.run_seed, epoch))


def build_train_sampler(config: RunConfig, dataset: Dataset, world_size: int = 1, rank: int = 0):
    """Repeated augmentation (also in one process: the reference code drops it there) or a seeded shuffle."""
    if config.augment.repeated_aug:
        return SeededRepeatAugSampler(dataset, world_size, rank, config.augment.repeated_aug_repeats, config.seed)
    return SeededSampler(dataset, world_size, rank, config.seed)


def build_train_loader(config: RunConfig, splits: DataSplits, batch_size: int, world_size: int = 1, rank: int = 0,
                       pin_memory: bool = False, device: torch.device | str = "cpu"):
    """In-memory datasets: batches augmented on `device`; others: a DataLoader with workers and pinned memory."""
    sampler = build_train_sampler(config, splits.train, world_size, rank)
    if splits.in_memory:
        transform = BatchTransform(config, training=True, device=device)
        return InMemoryLoader(cast(InMemoryImages, splits.train), batch_size, transform, sampler, drop_last=True)
    workers = config.data.num_workers
    return DataLoader(
        splits.train, batch_size=batch_size, sampler=sampler, num_workers=workers, pin_memory=pin_memory,
        drop_last=True, persistent_workers=workers > 0,
    )


def build_eval_loader(config: RunConfig, dataset: Dataset, in_memory: bool, batch_size: int, indices=None,
                      pin_memory: bool = False, device: torch.device | str = "cpu"):
    """Sequential evaluation batches (optionally over a shard of indices, for several processes)."""
    if indices is not None:
        dataset = cast(InMemoryImages, dataset).subset(indices) if in_memory else Subset(dataset, list(indices))
    if in_memory:
        transform = BatchTransform(config, training=False, device=device)
        return InMemoryLoader(cast(InMemoryImages, dataset), batch_size, transform)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=config.data.num_workers,
                      pin_memory=pin_memory)
