"""Hostile and mistaken input to `harness run`: exit code 2, one line, nothing written (speed: benchmarks/refusals.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app

runner = CliRunner()
BASE = "base: {data.name: digits, model.name: deit_tiny_patch4_32}\n"


def alias_bomb() -> str:
    text = 'name: bomb\na: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    previous = "a"
    for name in "bcdefghi":
        text += f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]\n"
        previous = name
    return text + "base: {x: *i}\n"


# case -> (file content, what the one line must say)
CASES: dict[str, tuple[str | bytes, str]] = {
    "alias bomb": (alias_bomb(), "aliases expand to more than"),
    "deep nesting": ("name: deep\nbase: " + "[" * 10_000 + "]" * 10_000 + "\n", "nested more than 64 levels"),
    "binary file": (bytes(range(256)) * 8, "binary, not YAML"),
    "UTF-16 file": ("name: x\n".encode("utf-16"), "UTF-16"),
    "huge seed": ("name: s\nseeds: [99999999999999999999]\n" + BASE, "seeds.0: Input should be less than or equal"),
    "bool for an int": ("name: s\n" + BASE.replace("}", ", schedule.epochs: true}"),
                        "base.schedule.epochs: Input should be a valid integer"),
    "float for an int": ("name: s\n" + BASE.replace("}", ", batch_size: 2.5}"), "base.batch_size: Input should be"),
    "duplicate key": ("name: s\n" + BASE + BASE, "duplicate key 'base'"),
    "typo in another profile": ("name: s\n" + BASE + "profiles:\n  quick: {set: {schedule.epochs: 1}}\n"
                                "  small: {set: {schedule.epoch: 1}}\n", "profiles.small.set.schedule.epoch: unknown key"),
    "typo under base": ("name: s\nbase: {data.name: digits, model.name: deit_tiny_patch4_32, "
                        "schedule: {warmup_epoch: 3}}\n", "base.schedule.warmup_epoch: unknown key"),
    "too large": ("name: big\n" + "# padding\n" * 120_000, "a spec may have at most"),
    # more digits than Python converts (4,300): a traceback and exit 1 before the reader refused it
    "integer too long to read": ("name: s\n" + BASE.replace("}", ", batch_size: " + "9" * 5001 + "}"),
                                 "an integer of 5,001 characters is too long to read"),
    # a SLURM section is checked when the launch options are made, and named like every other section
    "typo under slurm": ("name: s\n" + BASE + "profiles: {quick: {}}\nslurm: {partitionn: gpu}\n",
                         "spec.yaml: slurm.partitionn: unknown key; allowed keys: partition"),
    "bad value under slurm": ("name: s\n" + BASE + "profiles: {quick: {}}\nslurm: {timeout_min: 0}\n",
                              "spec.yaml: slurm.timeout_min: Input should be greater than or equal to 1"),
    "malformed pretrained tag": ("name: s\n" + BASE.replace("}", ", finetune.pretrained: a/b.c}"),
                                 "finetune.pretrained 'a/b.c' is not a timm pretrained tag"),
}


def run(tmp_path: Path, content: str | bytes, *extra: str):
    spec = tmp_path / "spec.yaml"
    spec.write_bytes(content if isinstance(content, bytes) else content.encode())
    return runner.invoke(app, ["run", str(spec), "--output", str(tmp_path / "out"), "--profile", "quick", *extra])


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, case):
    content, message = CASES[case]
    # how fast it is refused is benchmarks/refusals.py's to measure
    result = run(tmp_path, content)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert len(lines[0]) < 400  # the input is never echoed back whole
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("option, message", [
    (("--time", "0"), "SLURM parameters: --time: Input should be greater than or equal to 1"),
    (("--mem-gb", "-1"), "SLURM parameters: --mem-gb: Input should be greater than 0"),
    (("--sbatch", "=x"), "SLURM parameters: --sbatch: not an sbatch option"),
])
def test_a_bad_slurm_option_names_the_option(tmp_path, option, message):
    result = run(tmp_path, "name: s\n" + BASE + "profiles: {quick: {}}\n", *option)
    assert result.exit_code == 2 and result.stderr.startswith(f"error: {message}"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "validation error" not in result.stderr


def test_files_a_run_needs_are_checked_before_anything_is_written(tmp_path):
    spec = ("name: files\nbase:\n  data: {name: imagefolder, root: " + str(tmp_path / "no-images") + "}\n"
            "  model.name: deit_tiny_patch4_32\n"
            "  distillation: {kind: hard, teacher: {model: resnet_tiny_32, checkpoint: " + str(tmp_path / "t.pt") + "}}\n"
            "profiles: {quick: {}}\n")
    result = run(tmp_path, spec, "--executor", "local")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, result.stderr
    assert "data.root: no folder" in result.stderr and "no-images" in result.stderr
    assert "distillation.teacher.checkpoint: no file" in result.stderr and "t.pt" in result.stderr
    assert not (tmp_path / "out").exists()


def test_missing_published_weights_stop_the_launch_with_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    spec = ("name: weights\nbase:\n  data: {name: digits, img_size: 16}\n  model.name: deit_tiny_patch4_32\n"
            "  distillation: {kind: hard, teacher: {model: resnet18, pretrained: resnet18.a1_in1k}}\n"
            "profiles: {quick: {}}\n")
    result = run(tmp_path, spec, "--executor", "local")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "resnet18.a1_in1k" in lines[0], result.stderr
    assert "harness weights fetch resnet18.a1_in1k" in lines[0]
    assert not (tmp_path / "out").exists()
