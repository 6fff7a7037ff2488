"""A lab's own model and dataset by name: a spec's `imports:`, checked at plan time, trained through `harness run`,
recorded in the run's provenance."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app

LAB_CODE = Path(__file__).resolve().parent / "lab_code.py"
SPEC = """
name: lab
imports: [tests.lab_code]
base:
  data: {name: lab_stripes, img_size: 32, num_workers: 0}
  model.name: lab_mlp_32
  device: cpu
  batch_size: 50
  eval_batch_size: 100
  schedule: {epochs: 2, warmup_epochs: 0}
  augment: {auto_augment: null, random_erasing: 0.0, repeated_aug: false, mixup: 0.0, cutmix: 0.0, label_smoothing: 0.0}
  ema: {enabled: false}
  throughput: {batch_size: 8, repeats: 1}
"""


def _spec(tmp_path: Path, text: str = SPEC) -> str:
    path = tmp_path / "lab.yaml"
    path.write_text(text)
    return str(path)


def test_a_model_and_a_dataset_of_the_lab_train_through_harness_run(tmp_path, importable_by_jobs):
    from harness.store import open_store

    db = f"sqlite:///{tmp_path / 'store.db'}"
    result = CliRunner().invoke(app, ["run", _spec(tmp_path), "--executor", "local", "--db", db,
                                      "--output", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    with open_store(db) as store:
        (run,) = store.runs(spec="lab")
        assert run.status == "completed" and run.config["imports"] == ["tests.lab_code"]
        assert [e for _, e, n, _ in store.metrics([run.hash]) if n == "top1"] == [0, 1]
    files = run.provenance["imports"]["tests.lab_code"]
    assert files == {str(LAB_CODE): hashlib.sha256(LAB_CODE.read_bytes()).hexdigest()}


@pytest.mark.parametrize("old, new, says", [
    ("tests.lab_code", "tests.no_such_lab", ["imports", "cannot import 'tests.no_such_lab'", "PYTHONPATH"]),
    ("lab_stripes", "lab_nosuch", ["unknown dataset 'lab_nosuch'", "lab_stripes"]),
    ("lab_mlp_32", "lab_mlp_nosuch", ["unknown model 'lab_mlp_nosuch'", "lab_mlp_32"]),
])
def test_a_module_that_cannot_be_imported_or_a_name_it_does_not_register_is_one_line_at_plan_time(
        tmp_path, old, new, says):
    result = CliRunner().invoke(app, ["run", _spec(tmp_path, SPEC.replace(old, new)), "--dry-run",
                                      "--db", f"sqlite:///{tmp_path / 'store.db'}"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and all(part in lines[0] for part in says), lines


def test_without_imports_the_hash_of_a_config_is_what_it_was():
    from harness.config import RunConfig, run_hash

    assert "imports" not in RunConfig().as_json()
    assert run_hash(RunConfig()) != run_hash(RunConfig(imports=("tests.lab_code",)))


def test_a_lab_model_never_enters_the_cache_of_timm_s_names_and_a_typo_suggests_it(tmp_path, monkeypatch):
    from harness import registry

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    registry.import_modules(["tests.lab_code"])
    assert "lab_mlp_32" not in registry.timm_model_names() and "resnet50" in registry.timm_model_names()
    assert "lab_mlp_32" not in (next((tmp_path / "deit-harness").glob("timm-*.txt"))).read_text().split()
    assert registry.check_model("lab_mlp_32") == "lab_mlp_32"
    with pytest.raises(KeyError, match="unknown model 'lab_mpl_32'; did you mean: lab_mlp_32"):
        registry.check_model("lab_mpl_32")
