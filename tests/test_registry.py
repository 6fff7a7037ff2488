"""The catalog of names (models, datasets, presets): one registry per kind, looked up without torch, and the
cached timm names that spare a command the timm import match timm's registry."""

from __future__ import annotations

import pytest

from harness import registry


def test_the_tiny_models_are_the_ones_the_trainer_registers_in_timm():
    import timm
    from timm.models import _registry

    import harness.trainer.tiny_models as tiny

    registered = {name for name, module in _registry._model_to_module.items()
                  if module == tiny.__name__.rsplit(".", 1)[-1] and timm.is_model(name)
                  and getattr(_registry._model_entrypoints[name], "__module__", "") == tiny.__name__}
    assert registered == set(registry.MODELS)


def test_a_builtin_dataset_and_a_labs_are_registered_alike():
    """One registry per kind of name: the built-in datasets are entries of the registry a lab's decorator fills,
    and a name is valid once, and only once, something registers it."""
    assert {"digits", "fashion_mnist", "imagefolder", "synthetic"} <= set(registry.DATASETS)
    with pytest.raises(KeyError, match="known datasets: digits, fashion_mnist, imagefolder"):
        registry.check_dataset("only_here")

    @registry.register_dataset("only_here")
    def build(config):  # pragma: no cover - never built
        raise AssertionError

    try:
        assert registry.check_dataset("only_here") == "only_here"
        assert registry.DATASETS.get("only_here") is build
    finally:
        registry.DATASETS._entries.pop("only_here")


def test_unknown_presets_list_the_valid_ones():
    assert registry.PRESETS["no_mixup"] == {"augment.mixup": 0.0}
    with pytest.raises(KeyError, match="unknown preset 'no_mixupp'; known presets: autoaug, dropout, ema"):
        registry.preset_overrides("no_mixupp")


def test_looking_up_names_imports_no_torch():
    """Every kind of name is looked up, and a lab's name registered, without importing torch or timm."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from harness import registry\n"
            "registry.check_dataset('digits'); registry.preset_overrides('ema'); registry.is_tiny_vit('x')\n"
            "registry.MODELS.get('resnet_tiny_32'); registry.register_dataset('lab')(print)\n"
            "assert registry.dataset_names()[:2] == ['digits', 'fashion_mnist']\n"
            "bad = [m for m in ('torch', 'timm', 'harness.trainer') if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_timm_names_are_cached_per_version(tmp_path, monkeypatch):
    import timm

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    names = registry.timm_model_names()
    assert "deit_base_distilled_patch16_224" in names and "regnety_160" in names
    # timm's own models: neither the harness's nor a lab's (tests/lab_code.py may be imported in this process)
    assert names == {n for n in timm.list_models() if timm.models.model_entrypoint(n).__module__.startswith("timm.")}
    assert not names & set(registry.MODELS)
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


def test_twin_names_follow_the_rule_without_a_model_look_up():
    assert registry.twin_name("deit_base_patch16_384") == "deit_base_distilled_patch16_384"
    assert registry.twin_name("deit_tiny_distilled_patch4_32") == "deit_tiny_distilled_patch4_32"
    assert registry.twin_name("resnet_tiny_32") is None


@pytest.mark.slow  # starts processes
def test_validating_a_spec_imports_neither_torch_nor_timm(tmp_path):
    import subprocess
    import sys

    code = ("import sys\n"
            "from harness.spec import expand, load_spec\n"
            "runs = expand(load_spec('ablations/distillation.yaml'), 'quick')\n"
            "assert any(r.config.model.name == 'resnet_tiny_32' for r in runs)\n"
            "bad = [m for m in ('torch', 'timm', 'harness.trainer') if m in sys.modules]\n"
            "assert not bad, bad\n")
    env = dict(__import__("os").environ, XDG_CACHE_HOME=str(tmp_path))
    # the timm name cache is written once (that first call may import timm); the next validation must not
    subprocess.run([sys.executable, "-c", "from harness.registry import timm_model_names; timm_model_names()"],
                   check=True, env=env)
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_the_report_aliases_name_every_tiny_model_and_no_unknown_one():
    import yaml

    from harness.report.definitions import reports_dir

    aliases = yaml.safe_load((reports_dir() / "models.yaml").read_text())["models"]
    named = {name for names in aliases.values() for name in names}
    assert set(registry.MODELS) <= named
    for name in named:
        registry.check_model(name)
