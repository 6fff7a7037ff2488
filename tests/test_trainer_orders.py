"""Independent seeds: no two (seed, epoch) pairs of a run share a data order, with either sampler, in one
process or sharded over two (harness.trainer.loaders.epoch_seed)."""

import pytest

from harness.config import RunConfig
from harness.trainer.loaders import build_train_sampler, epoch_seed

SEEDS, EPOCHS = range(8), range(12)


def order(seed: int, epoch: int, repeated: bool, world: int) -> tuple:
    """What the run's processes visit in one epoch, rank after rank."""
    config = RunConfig(seed=seed, augment={"repeated_aug": repeated}, device="cpu")
    visits = []
    for rank in range(world):
        sampler = build_train_sampler(config, list(range(40)), world, rank)
        sampler.set_epoch(epoch)
        visits.append(tuple(sampler))
    return tuple(visits)


@pytest.mark.parametrize("world", [1, 2])
@pytest.mark.parametrize("repeated", [False, True])
def test_eight_seeds_by_twelve_epochs_give_96_distinct_orders(repeated, world):
    orders = {order(seed, epoch, repeated, world) for seed in SEEDS for epoch in EPOCHS}
    assert len(orders) == len(SEEDS) * len(EPOCHS)
    # and each is one epoch's worth of the 40 images: each image once, or under repeated augmentation 40 draws
    # from the repeated list (timm's sampler keeps an epoch at the dataset's length)
    visited = [i for shard in order(3, 5, repeated, world) for i in shard]
    assert len(visited) == 40 and (repeated or sorted(visited) == list(range(40)))


def test_an_epoch_order_is_a_function_of_seed_and_epoch_alone():
    assert order(2, 7, False, 2) == order(2, 7, False, 2)
    assert epoch_seed(0, 1) != epoch_seed(1, 0)
    assert 0 <= epoch_seed(2**32 - 1, 10**6) < 2**63
