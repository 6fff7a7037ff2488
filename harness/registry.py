"""Name look-ups shared by spec validation and the trainer: models, teachers, datasets.

Models are timm's registry (the harness registers its tiny 32-px models there on import);
datasets are the trainer's dataset registry. Each look-up fails with the valid names.
"""

from __future__ import annotations

import difflib


def check_model(name: str) -> str:
    import timm

    import harness.models  # noqa: F401  (registers the harness's tiny models in timm)

    if timm.is_model(name):
        return name
    close = difflib.get_close_matches(name, timm.list_models(), n=5)
    hint = f"; did you mean: {', '.join(close)}" if close else "; see timm.list_models()"
    raise KeyError(f"unknown model '{name}'{hint}")


def distilled_twin(name: str) -> str:
    """The distillation-token twin of a DeiT-style model name (deit_tiny_patch16_224 -> deit_tiny_distilled_patch16_224)."""
    if "_distilled_" in name:
        return check_model(name)
    twin = name.replace("_patch", "_distilled_patch", 1)
    try:
        return check_model(twin)
    except KeyError:
        raise KeyError(f"model '{name}' has no distillation-token twin (looked for '{twin}')") from None


def dataset_names() -> list[str]:
    from harness.trainer.data import DATASETS

    return sorted(DATASETS)


def check_dataset(name: str) -> str:
    names = dataset_names()
    if name not in names:
        raise KeyError(f"unknown dataset '{name}'; known datasets: {', '.join(names)}")
    return name
