"""The number of runs a spec expands to is counted before anything is built, and bounded (--max-runs)."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.spec import MAX_RUNS, SpecError, count_runs, expand, load_spec, validate_profiles
from tests.test_spec import SPEC
from tests.tiny_spec import tiny_spec


def _grid(tmp_path: Path, values: int, axes: int = 2, profile_axes: int = 0) -> Path:
    """A spec whose axes multiply to values**axes runs (a profile, if asked, to values**profile_axes)."""
    lists = {f"optimizer.{key}": [round(1e-4 * (i + 1), 8) for i in range(values)]
             for key in ("base_lr", "weight_decay", "eps")[:max(axes, profile_axes)]}
    text = tiny_spec("grid") + "axes:\n" + "".join(f"  {k}: {v}\n" for k, v in list(lists.items())[:axes])
    if profile_axes:
        text += "profiles:\n  big:\n    axes:\n" + "".join(
            f"      {k}: {v}\n" for k, v in list(lists.items())[:profile_axes])
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("values, axes, count", [(1000, 2, "1,000,000"), (1000, 3, "1,000,000,000")])
def test_a_huge_grid_is_refused_without_building_it(tmp_path, values, axes, count):
    loaded = load_spec(_grid(tmp_path, values, axes))
    tracemalloc.start()
    started = time.process_time()
    try:
        with pytest.raises(SpecError) as caught:
            expand(loaded)
        with pytest.raises(SpecError, match=count):
            validate_profiles(loaded)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    cpu = time.process_time() - started
    message = str(caught.value)
    assert f"expands to {count} runs" in message and "--max-runs 10,000" in message and "\n" not in message
    # building a million drafts takes gigabytes and minutes; counting them, kilobytes and milliseconds
    assert peak < 2_000_000, peak
    assert cpu < 5, cpu


def test_every_profile_is_counted_before_any_is_expanded(tmp_path):
    loaded = load_spec(_grid(tmp_path, 150, axes=1, profile_axes=3))
    assert count_runs(loaded) == 150 and count_runs(loaded, "big") == 150 ** 3
    assert len(expand(loaded)) == 150  # paper scale alone is small
    with pytest.raises(SpecError, match=r"3,375,000 runs under profile 'big'"):
        validate_profiles(loaded)
    with pytest.raises(SpecError, match="above --max-runs 100"):
        expand(loaded, max_runs=100)


def test_the_count_is_the_number_of_runs_expanded(tmp_path):
    path = tmp_path / "demo.yaml"
    path.write_text(SPEC)
    loaded = load_spec(path)
    for profile in (None, "quick"):
        assert count_runs(loaded, profile) == len(expand(loaded, profile)) > 1
        assert len(expand(loaded, profile, max_runs=count_runs(loaded, profile))) == count_runs(loaded, profile)
        with pytest.raises(SpecError, match="above --max-runs"):
            expand(loaded, profile, max_runs=count_runs(loaded, profile) - 1)
    assert MAX_RUNS == 10_000


def test_run_refuses_in_one_line_naming_the_count(tmp_path):
    from harness.cli import app

    path = _grid(tmp_path, 1000, axes=2)
    result = CliRunner().invoke(app, ["run", str(path), "--dry-run", "--db", f"sqlite:///{tmp_path / 'h.db'}"])
    assert result.exit_code == 2 and "1,000,000 runs" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1
    small = _grid(tmp_path, 3, axes=2)
    result = CliRunner().invoke(app, ["run", str(small), "--dry-run", "--max-runs", "8",
                                      "--db", f"sqlite:///{tmp_path / 'h.db'}"])
    assert result.exit_code == 2 and "9 runs" in result.output and "--max-runs 8" in result.output


@pytest.mark.parametrize("command", [["run", "SPEC", "--dry-run"], ["weights", "fetch", "SPEC"],
                                     ["seeds", "SPEC", "--detect", "1"]])
def test_every_command_that_reads_a_spec_file_honours_max_runs(tmp_path, command):
    """`run`, `weights fetch` and `seeds` turn a spec into its runs one way: each refuses, in one line, a spec
    above --max-runs (and, by default, one above 10,000 runs under any profile)."""
    from harness.cli import app

    db = ["--db", f"sqlite:///{tmp_path / 'h.db'}"] if command[0] != "weights" else []
    small = _grid(tmp_path, 3, axes=2)
    result = CliRunner().invoke(app, [str(small) if a == "SPEC" else a for a in command] + ["--max-runs", "8", *db])
    assert result.exit_code == 2 and "9 runs" in result.output and "--max-runs 8" in result.output, result.output
    big = _grid(tmp_path, 3, axes=1, profile_axes=3)  # paper scale 3 runs; profile 'big' 27
    result = CliRunner().invoke(app, [str(big) if a == "SPEC" else a for a in command] + ["--max-runs", "20", *db])
    assert result.exit_code == 2 and "27 runs under profile 'big'" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1
