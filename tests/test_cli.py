"""The `harness run` command: bad specs exit 2 and write nothing; a dry run trains nothing."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from harness.cli import app
from tests.test_spec import BAD_SPECS, SPEC, write

runner = CliRunner()


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_bad_spec_exits_2_with_one_message_and_writes_nothing(tmp_path, case):
    text, key, message = BAD_SPECS[case]
    path = write(tmp_path, text)
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", str(path), "--output", str(out)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}"), result.stderr
    assert message in lines[0]
    assert not out.exists()


def test_missing_spec_file_exits_2(tmp_path):
    result = runner.invoke(app, ["run", str(tmp_path / "absent.yaml"), "--output", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "spec file not found" in result.stderr
    assert not (tmp_path / "out").exists()


def test_dry_run_prints_one_line_per_run_and_creates_no_store(tmp_path):
    path = write(tmp_path, SPEC)
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", str(path), "--profile", "quick", "--dry-run", "--output", str(out)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 5 + 1  # 1 teacher + 2 variants x 2 models, then the summary
    assert all("to run" in line for line in lines[:-1])
    assert "dry run: nothing trained" in lines[-1]
    assert not out.exists()


@pytest.mark.parametrize("command", [["results"], ["status"], ["db", "info"], ["report", "--table", "3"],
                                     ["cancel", "ablation"], ["retry", "--failed"]])
def test_every_command_finds_the_store_in_the_output_folder(tmp_path, planned, monkeypatch, command):
    from harness.store import open_store

    monkeypatch.delenv("HARNESS_DB", raising=False)
    out = tmp_path / "elsewhere"
    with open_store(f"sqlite:///{out / 'harness.db'}") as store:
        store.register_experiment("ablation", "name: ablation\n", "ablation.yaml")
        store.register_runs("ablation", planned(1))
    monkeypatch.chdir(tmp_path)  # ./runs does not exist here
    result = runner.invoke(app, [*command, "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "runs").exists()
