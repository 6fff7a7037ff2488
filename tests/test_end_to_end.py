"""The whole loop: a spec trained through submitit's local executor, stored, read back with pandas."""

from __future__ import annotations

import pytest

from harness.launch import LaunchOptions, launch
from harness.spec import expand, load_spec
from tests.test_spec import write

# trains whole specs through the local executor: the full suite's, not the fast lane's
pytestmark = pytest.mark.slow

SPEC = """
name: e2e
base:
  data: {name: digits, img_size: 32, num_workers: 0, train_subset: 300}
  model.name: deit_tiny_patch4_32
  device: cpu
  batch_size: 50
  eval_batch_size: 200
  schedule: {epochs: 1, warmup_epochs: 0}
  augment: {auto_augment: null, random_erasing: 0.0, repeated_aug: false}
  throughput: {batch_size: 16, repeats: 2}
  distillation:
    teacher: {model: resnet_tiny_32, run: teacher}
variants:
  teacher:
    set: {model.name: resnet_tiny_32, distillation.teacher: null}
  deit_distilled:
    set: {distillation.kind: hard, model.distillation_token: true}
"""


@pytest.mark.slow
def test_a_spec_trains_through_the_local_executor_and_reads_back_with_pandas(tmp_path):
    from harness import results
    from harness.store import open_store

    db_url = f"sqlite:///{tmp_path / 'store.db'}"
    loaded = load_spec(write(tmp_path, SPEC))
    runs = expand(loaded)
    store = open_store(db_url)
    options = LaunchOptions(executor="local", output=tmp_path / "out", poll_s=0.5)
    lines: list[str] = []
    result = launch(loaded, runs, store, db_url, options, progress=lines.append)
    assert result.ok, [f.error for f in result.failures]
    assert len(result.submitted) == 2
    # the teacher was trained before the student that needs it
    assert result.submitted[0] == next(r.hash for r in runs if r.variant == "teacher")
    assert any("completed" in line for line in lines)

    frame = results.runs(db_url)
    assert len(frame) == 2
    assert set(frame["status"]) == {"completed"}
    student = frame[frame["variant"] == "deit_distilled"].iloc[0]
    for metric in ("top1", "top1_cls", "top1_dist", "top5", "params", "throughput_paper_img_s"):
        assert 0 <= student[metric] and student[metric] == student[metric], metric
    assert 0 <= student["top1"] <= 100

    again = launch(loaded, runs, store, db_url, options, progress=lines.append)
    assert again.submitted == [] and again.ok
    assert {e.state for e in again.entries} == {"done"}


def test_a_failing_run_is_reported_with_its_log(tmp_path):
    from harness.store import open_store

    db_url = f"sqlite:///{tmp_path / 'store.db'}"
    # an imagefolder whose folders hold no images: found only when the job builds its dataset
    for split in ("train", "val"):
        (tmp_path / "images" / split / "cat").mkdir(parents=True)
    text = SPEC.replace("data: {name: digits, img_size: 32, num_workers: 0, train_subset: 300}",
                        f"data: {{name: imagefolder, root: {tmp_path / 'images'}, img_size: 32, num_workers: 0}}")
    loaded = load_spec(write(tmp_path, text))
    runs = [r for r in expand(loaded) if r.variant == "teacher"]
    store = open_store(db_url)
    options = LaunchOptions(executor="debug", output=tmp_path / "out", poll_s=0.1)
    result = launch(loaded, runs, store, db_url, options, progress=lambda line: None)
    assert not result.ok
    failure = result.failures[0]
    assert failure.run.variant == "teacher"
    assert "Found no valid file" in failure.error or "no valid file" in failure.error.lower(), failure.error
    record = store.get_run(runs[0].hash)
    assert record.status == "failed" and record.error == failure.error


def test_a_missing_dataset_folder_stops_the_launch_before_anything_is_written(tmp_path):
    from harness.launch import PreflightError
    from harness.store import open_store

    db_url = f"sqlite:///{tmp_path / 'store.db'}"
    text = SPEC.replace("data: {name: digits, img_size: 32, num_workers: 0, train_subset: 300}",
                        f"data: {{name: imagefolder, root: {tmp_path / 'nowhere'}, img_size: 32, num_workers: 0}}")
    loaded = load_spec(write(tmp_path, text))
    store = open_store(db_url)
    options = LaunchOptions(executor="debug", output=tmp_path / "out", poll_s=0.1)
    with pytest.raises(PreflightError, match="data.root: no folder .*nowhere"):
        launch(loaded, expand(loaded), store, db_url, options, progress=lambda line: None)
    assert store.runs() == [] and store.experiments() == []
    assert not (tmp_path / "out").exists()
