"""What a researcher sees, tried from the README: every problem at once, one true line, plain words (issue 19)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from harness.cli import app

runner = CliRunner()

BROKEN = """
name: broken
base:
  data: {name: imagefolder, root: MISSING/imagenet, img_size: 32, num_workers: 0}
  model.name: resnet_tiny_32
  schedule: {epochs: 1, warmup_epochs: 0}
variants:
  plain: {}
  distilled:
    set:
      distillation: {kind: hard, teacher: {model: resnet_tiny_32, checkpoint: MISSING/teacher.pt}}
  finetuned:
    set:
      finetune: {pretrained: deit_tiny_patch16_224.fb_in1k}
"""


def test_a_dry_run_reports_every_problem_the_real_run_would_stop_on(tmp_path, monkeypatch):
    spec = tmp_path / "broken.yaml"
    spec.write_text(BROKEN.replace("MISSING", str(tmp_path / "missing")))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty hub cache: the weights are not there
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # no SLURM commands on this machine
    db = f"sqlite:///{tmp_path / 'store.db'}"
    dry = runner.invoke(app, ["run", str(spec), "--dry-run", "--executor", "slurm", "--db", db])
    assert dry.exit_code == 2, dry.output
    assert "3 runs: 0 done or in flight, 3 to run" in dry.stdout
    errors = [line for line in dry.stderr.splitlines() if line.startswith("error: ")]
    assert errors[0] == "error: the real run would stop on 5 problem(s):"
    found = errors[1:]
    # in the order found: the runs' files (run by run), the weights, the executor's commands
    assert ["data.root: no folder" in found[0], "distillation.teacher.checkpoint: no file" in found[1],
            "missing weights deit_tiny_patch16_224.fb_in1k" in found[2], "no `sbatch` command" in found[3],
            "no `srun` command" in found[4]] == [True] * 5, found
    # the real run stops on the same problems, in the same order, before it writes anything
    real = runner.invoke(app, ["run", str(spec), "--executor", "slurm", "--db", db])
    assert real.exit_code == 2
    assert [line for line in real.stderr.splitlines() if line.startswith("error: ")] == found
    assert not Path(tmp_path / "store.db").exists()


def test_weights_fetch_without_network_says_so_in_one_line(tmp_path):
    import os
    import subprocess
    import sys
    import time

    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE" and "proxy" not in k.lower()}
    # port 9 (discard) of this machine: nothing listens, as on a compute node without network
    env.update(HF_HOME=str(tmp_path / "hf"), HF_ENDPOINT="http://127.0.0.1:9",
               PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "harness", "weights", "fetch", "deit_tiny_patch16_224.fb_in1k"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert "cannot reach the Hugging Face hub (http://127.0.0.1:9)" in lines[0] and "holds none" not in lines[0]
    assert time.monotonic() - start < 60  # no minute of retries
