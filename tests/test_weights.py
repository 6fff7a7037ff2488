"""Named pretrained weights: listing the ones a plan names, checking the hub cache offline, fetching by spec."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import subprocess
import sys
from pathlib import Path

import pytest

from harness import weights
from harness.config import RunConfig
from tests.hub_cache import add_weights, hub_cache, timm_weights  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[1]
PRESENT, MISSING = "test_resnet.r160_in1k", "test_vit.r160_in1k"


def planned_run(teacher: str | None = None, finetune: str | None = None):
    from harness.spec import PlannedRun

    raw = {"model": {"name": "deit_tiny_patch4_32"}, "data": {"name": "digits", "img_size": 32}}
    if teacher:
        raw["distillation"] = {"kind": "hard", "teacher": {"model": teacher.split(".")[0], "pretrained": teacher}}
    if finetune:
        raw["finetune"] = {"pretrained": finetune}
    return PlannedRun(hash="0" * 64, config=RunConfig.model_validate(raw), spec="t", profile=None, variant="v",
                      label="v", coords={}, seed=0)


def test_named_weights_are_the_teachers_and_finetune_sources():
    runs = [planned_run(teacher=PRESENT), planned_run(finetune=MISSING), planned_run(teacher=PRESENT), planned_run()]
    assert weights.named_weights(runs) == [PRESENT, MISSING]


def test_check_finds_cached_weights_and_names_the_missing_in_one_line(hub_cache):
    add_weights(hub_cache, PRESENT, timm_weights(PRESENT))
    runs = [planned_run(teacher=PRESENT), planned_run(finetune=MISSING)]
    missing = weights.check_weights(runs)
    assert len(missing) == 1 and "\n" not in missing[0]
    assert MISSING in missing[0] and f"harness weights fetch {MISSING}" in missing[0] and str(hub_cache) in missing[0]
    assert weights.check_weights(runs[:1]) == []
    assert weights.fetch(PRESENT).resolve().parent.name == "blobs"


def test_every_tag_the_specs_name_is_where_timm_loads_it_from():
    import timm
    from timm.models import get_pretrained_cfg

    from harness.spec import expand, load_spec

    tags = {PRESENT, MISSING}
    for spec in sorted((ROOT / "ablations").glob("*.yaml")):
        loaded = load_spec(spec)
        for profile in [None, *loaded.spec.profiles]:
            tags.update(weights.named_weights(expand(loaded, profile)))
    assert {"regnety_160.deit_in1k", "deit_base_patch16_224.fb_in1k"} <= tags
    published = set(timm.list_pretrained())
    for tag in tags:
        cfg = get_pretrained_cfg(tag)
        assert tag in published and cfg.hf_hub_id == weights.hub_repo(tag), tag
        assert cfg.hf_hub_filename in (None, *weights.HUB_FILES), tag


def test_listing_and_checking_import_no_torch(hub_cache):
    code = ("import sys\n"
            "from harness.spec import expand, load_spec\n"
            "from harness.weights import check_weights\n"
            "print(check_weights(expand(load_spec('ablations/distillation.yaml'))))\n"
            "bad = [m for m in ('torch', 'timm') if m in sys.modules]\n"
            "assert not bad, bad\n")
    env = dict(os.environ, XDG_CACHE_HOME=str(hub_cache.parent))
    # spec validation reads timm's model names from a cache written once (that first call may import timm)
    subprocess.run([sys.executable, "-c", "from harness.registry import timm_model_names; timm_model_names()"],
                   check=True, env=env)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)
    assert out.returncode == 0, out.stderr
    assert "missing weights regnety_160.deit_in1k" in out.stdout


def test_cli_fetch_by_spec_and_its_one_line_error(hub_cache, tmp_path):
    from typer.testing import CliRunner

    from harness.cli import app

    add_weights(hub_cache, PRESENT, timm_weights(PRESENT))
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: w\nbase:\n  data: {name: digits, img_size: 32}\n  model: {name: deit_tiny_patch4_32}\n"
                    "variants:\n  a: {set: {distillation.kind: hard, distillation.teacher.model: test_resnet,"
                    f" distillation.teacher.pretrained: {PRESENT}}}}}\n"
                    f"profiles:\n  more:\n    variants:\n      a: {{set: {{finetune.pretrained: {MISSING}}}}}\n")
    res = CliRunner().invoke(app, ["weights", "fetch", str(spec)])
    assert res.exit_code == 0, res.output
    assert PRESENT in res.output and str(hub_cache) in res.output
    res = CliRunner().invoke(app, ["weights", "fetch", str(spec), "--profile", "more"])
    assert res.exit_code == 2 and PRESENT in res.stdout
    assert res.stderr.startswith(f"error: missing weights {MISSING}") and len(res.stderr.strip().splitlines()) == 1
    res = CliRunner().invoke(app, ["weights", "fetch", str(tmp_path / "nope.yaml")])
    assert res.exit_code == 2 and res.stderr.startswith("error: ") and len(res.stderr.strip().splitlines()) == 1
