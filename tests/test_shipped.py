"""What the package ships beside its code (harness/shipped): the table definitions, the paper's numbers and the
ablation specs, in the wheel and in a checkout, and a shipped spec named by its name."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness import shipped
from harness.cli import app
from harness.report import definitions
from harness.spec.errors import SpecError

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = {"reports": "harness/shipped/reports", "ablations": "harness/shipped/ablations"}


def _data_files(folder: str) -> set[str]:
    return {str(p.relative_to(ROOT / folder)) for p in (ROOT / folder).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


@pytest.mark.slow
def test_the_wheel_carries_every_table_definition_paper_number_and_spec(tmp_path):
    # built from a copy, so the checkout gets no build/ folder and parallel workers share nothing
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("harness", "reports", "ablations"):
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    for name in ("pyproject.toml", "setup.py", "README.md"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, source / name)
    # the venv's own setuptools, not one fetched from the package index: tests stay offline
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--no-deps",
                    "--no-build-isolation", "-w", str(tmp_path / "dist"), str(source)], check=True)
    wheel, = (tmp_path / "dist").glob("deit_harness-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder, inside in SHIPPED.items():
        assert {f"{inside}/{name}" for name in _data_files(folder)} - names == set(), f"{folder}/ files not in the wheel"


def test_a_checkout_reads_the_top_level_folders_themselves():
    # one source of truth: an editable install maps the repository's folders, it holds no copy of them
    assert shipped.reports_dir().resolve() == ROOT / "reports"
    assert shipped.ablations_dir().resolve() == ROOT / "ablations"


def test_the_report_reads_the_shipped_definitions(monkeypatch):
    monkeypatch.delenv("HARNESS_REPORTS", raising=False)
    assert definitions.reports_dir() == shipped.reports_dir()
    assert definitions.load_table(3).number == 3


def test_a_spec_is_named_by_path_or_by_a_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "distillation" in shipped.spec_names()
    assert shipped.spec_file("distillation") == shipped.ablations_dir() / "distillation.yaml"
    assert shipped.spec_file("ablations/distillation.yaml") == Path("ablations/distillation.yaml")
    # a lab's own file of that name wins over the shipped spec
    (tmp_path / "distillation").write_text("name: mine\n")
    assert shipped.spec_file("distillation") == Path("distillation")


def test_an_unknown_spec_name_lists_the_shipped_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpecError, match="no such spec file, nor a shipped spec of that name .*distillation"):
        shipped.spec_file("distilation")


def test_harness_run_takes_a_shipped_spec_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["run", "distillation", "--profile", "quick", "--dry-run", "--executor",
                                      "local", "--output", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    assert "no_distillation" in result.output
