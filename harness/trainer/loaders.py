"""Samplers and loaders: repeated augmentation, shards for several processes, in-memory or worker loaders."""

from __future__ import annotations

from typing import cast

import torch
from timm.data.distributed_sampler import RepeatAugSampler
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from harness.config import RunConfig
from harness.trainer.batching import BatchTransform, InMemoryLoader
from harness.trainer.datasets import DataSplits, InMemoryImages


class SeededRepeatAugSampler(RepeatAugSampler):
    """timm's repeated-augmentation sampler (the DeiT reference's RASampler), shuffled by seed and epoch
    (the reference shuffles by epoch alone, so two seeds would see the same order)."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, num_repeats: int, seed: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, num_repeats=num_repeats)
        self.seed = seed

    def set_epoch(self, epoch: int) -> None:
        self.epoch = self.seed * 1_000_003 + epoch


def build_train_sampler(config: RunConfig, dataset: Dataset, world_size: int = 1, rank: int = 0):
    """Repeated augmentation (also in one process: the reference code drops it there) or a seeded shuffle."""
    if config.augment.repeated_aug:
        return SeededRepeatAugSampler(dataset, world_size, rank, config.augment.repeated_aug_repeats, config.seed)
    return DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=config.seed)


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
