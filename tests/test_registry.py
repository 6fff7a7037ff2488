"""Name look-ups: the constants that spare a command the timm import match the real registries."""

from __future__ import annotations

import pytest

from harness import registry


def test_harness_models_are_the_ones_harness_models_registers():
    import timm
    from timm.models import _registry

    import harness.models  # noqa: F401

    registered = {name for name, module in _registry._model_to_module.items()
                  if module == harness.models.__name__.rsplit(".", 1)[-1] and timm.is_model(name)
                  and getattr(_registry._model_entrypoints[name], "__module__", "") == "harness.models"}
    assert registered == set(registry.HARNESS_MODELS)


def test_dataset_names_are_the_trainers_registry():
    from harness.trainer.data import DATASETS

    assert set(DATASETS) == set(registry.DATASET_NAMES)


def test_timm_names_are_cached_per_version(tmp_path, monkeypatch):
    import timm

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    names = registry.timm_model_names()
    assert "deit_base_distilled_patch16_224" in names and "regnety_160" in names
    assert names == set(timm.list_models()) - set(registry.HARNESS_MODELS)
    cached = list((tmp_path / "deit-harness").glob("timm-*-models.txt"))
    assert len(cached) == 1
    cached[0].write_text("only_this_model\n")
    assert registry.timm_model_names() == {"only_this_model"}


def test_unknown_names_list_the_close_ones():
    assert registry.check_model("deit_tiny_patch16_224.fb_in1k")
    with pytest.raises(KeyError, match="did you mean: deit_tiny_patch16_224"):
        registry.check_model("deit_tiny_patch16_22")
    with pytest.raises(KeyError, match="no distillation-token twin"):
        registry.distilled_twin("resnet_tiny_32")
    assert registry.distilled_twin("deit_tiny_patch4_32") == "deit_tiny_distilled_patch4_32"
    with pytest.raises(KeyError, match="known datasets: digits, fashion_mnist, imagefolder"):
        registry.check_dataset("cifar")
