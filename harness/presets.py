"""Named recipe presets: each row of the DeiT paper's Table 8 as a set of config overrides.

A spec variant names presets (`presets: [no_mixup]`); expansion merges their overrides
before the variant's own `set`, so the resolved config holds the values, not the names.
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "no_randaug": {"augment.auto_augment": None},
    "autoaug": {"augment.auto_augment": "original"},
    "no_mixup": {"augment.mixup": 0.0},
    "no_cutmix": {"augment.cutmix": 0.0},
    "no_mixup_cutmix": {"augment.mixup": 0.0, "augment.cutmix": 0.0},
    "no_erasing": {"augment.random_erasing": 0.0},
    "no_stoch_depth": {"model.drop_path": 0.0},
    "no_repeated_aug": {"augment.repeated_aug": False},
    "dropout": {"model.dropout": 0.1},
    "ema": {"ema.enabled": True},
    # SGD with the usual momentum and a learning rate scaled like AdamW's (0.1 for batch 1024)
    "sgd_pretrain": {"optimizer.name": "sgd", "optimizer.base_lr": 0.05, "optimizer.weight_decay": 1e-4},
    "sgd_finetune": {"optimizer.name": "sgd", "optimizer.base_lr": 0.005, "optimizer.weight_decay": 0.0},
    # the paper's fine-tuning at a higher resolution, as the reference repository's fine-tuning command runs it
    # (its ↑384 rows: 30 epochs, lr 5e-6 at batch 512 held constant by min-lr 5e-6 after the default 5 warm-up
    # epochs from 1e-6, weight decay 1e-8). The one home of this recipe: specs name the preset and pair it with
    # a fine-tune source and data.img_size
    "finetune": {
        "batch_size": 512,
        "schedule.epochs": 30,
        "schedule.warmup_epochs": 5,
        "schedule.warmup_lr": 1e-6,
        "schedule.min_lr": 5e-6,
        "optimizer.base_lr": 5e-6,
        "optimizer.weight_decay": 1e-8,
    },
}


def preset_overrides(name: str) -> dict[str, Any]:
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown preset '{name}'; known presets: {', '.join(sorted(PRESETS))}") from None
