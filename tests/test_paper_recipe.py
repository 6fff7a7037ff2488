"""The specs follow the paper's recipe where the reference code and the paper say so: the fine-tuning recipe
in one place (preset `finetune`, 5 warm-up epochs as the reference command), the EMA row of Table 8 fine-tuned
from the EMA weights, the paper's published teacher."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.registry import PRESETS
from harness.spec import expand, load_spec

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "ablations").glob("*.yaml"))
REFERENCE_FINETUNE = {"batch_size": 512, "schedule.epochs": 30, "schedule.warmup_epochs": 5,
                      "schedule.warmup_lr": 1e-6, "schedule.min_lr": 5e-6, "optimizer.base_lr": 5e-6,
                      "optimizer.weight_decay": 1e-8}


def dotted(config, key):
    node = config.as_json()
    for part in key.split("."):
        node = node[part]
    return node


def test_the_finetune_preset_is_the_reference_command():
    assert PRESETS["finetune"] == REFERENCE_FINETUNE


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_specs_name_the_finetune_preset_instead_of_repeating_it(spec):
    loaded = load_spec(spec)
    # transfer runs (Table 7) have their own fine-tuning recipe, stated in ablations/transfer.yaml
    for name, variant in loaded.spec.variants.items():
        if (variant.set.get("data.img_size") == 384 and not name.startswith("transfer_")) or "finetune" in variant.presets:
            assert "finetune" in variant.presets, name
            assert not set(PRESETS["finetune"]) & set(variant.set), name
    for run in expand(loaded):
        if run.config.finetune is not None and run.config.data.img_size >= 160 and "transfer_" not in run.variant:
            expected = dict(REFERENCE_FINETUNE)
            for other in loaded.spec.variants[run.variant].presets:  # e.g. Table 8's SGD fine-tuning row
                expected.update({k: v for k, v in PRESETS[other].items() if k in expected and other != "finetune"})
            assert {k: dotted(run.config, k) for k in REFERENCE_FINETUNE} == expected, run.variant


def test_the_ema_rows_finetune_starts_from_the_ema_weights():
    runs = {r.variant: r for r in expand(load_spec(ROOT / "ablations" / "training_recipe.yaml"))}
    ema, ft = runs["ema"], runs["ema_384"]
    assert ft.config.finetune.from_run == ema.hash and ft.config.finetune.use_ema and ft.config.ema.enabled
    assert not runs["baseline_384"].config.finetune.use_ema


def test_paper_scale_distillation_uses_the_papers_published_teacher():
    for name in ("distillation", "model_size", "transfer"):
        for run in expand(load_spec(ROOT / "ablations" / f"{name}.yaml")):
            if run.config.distillation.kind != "none":
                assert run.config.distillation.teacher.pretrained == "regnety_160.deit_in1k", (name, run.variant)


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_paper_scale_trains_in_mixed_precision_and_the_cpu_profiles_in_fp32(spec):
    loaded = load_spec(spec)
    for profile in [None, *loaded.spec.profiles]:
        for run in expand(loaded, profile):
            wanted = "fp32" if run.config.device == "cpu" else "auto"
            assert run.config.precision == wanted, (spec.stem, profile, run.variant)
