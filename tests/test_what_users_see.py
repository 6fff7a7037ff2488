"""What a researcher sees, tried from the README: every problem at once, one true line, plain words (issue 19)."""

from __future__ import annotations

from pathlib import Path

import pytest
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
    assert errors[0] == "error: the real run would stop on 5 problems:"
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


@pytest.mark.slow
def test_weights_fetch_without_network_says_so_in_one_line(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE" and "proxy" not in k.lower()}
    # port 9 (discard) of this machine: nothing listens, as on a compute node without network
    env.update(HF_HOME=str(tmp_path / "hf"), HF_ENDPOINT="http://127.0.0.1:9",
               PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    # how soon it gives up is benchmarks/refusals.py's to measure; the timeout only ends a hang
    done = subprocess.run([sys.executable, "-m", "harness", "weights", "fetch", "deit_tiny_patch16_224.fb_in1k"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert "cannot reach the Hugging Face hub (http://127.0.0.1:9)" in lines[0] and "holds none" not in lines[0]


def test_cost_counts_cpu_runs_in_core_hours(sqlite_store, planned):
    from harness.report.cost import format_costs, run_cost, spec_costs
    from tests.runstate import drive

    (run,) = planned(1)
    sqlite_store.register_experiment("ablation", "", "")
    sqlite_store.register_runs("ablation", [run])
    drive(sqlite_store, run.hash, "completed")
    # half an hour of training in 2 processes of 4 threads each: 4 core-hours, not "1 CPU-h"
    sqlite_store.log_final(run.hash, {"train_time_s": 1800.0}, {"device": "cpu (4 threads)", "world_size": "2"})
    assert run_cost(sqlite_store.get_run(run.hash)).cpu_h == 4.0
    text = format_costs(spec_costs(store=sqlite_store))
    assert "core-h" in text and "CPU-h" not in text and "4.000" in text


@pytest.mark.slow
def test_a_probe_times_seconds_of_steps_says_how_noisy_they_were_and_rounds_to_it():
    import re

    from harness.launch import estimate as est
    from harness.launch.probe import MIN_SECONDS, MIN_STEPS
    from tests.test_launch_estimate import config, planned_run

    [e] = est.estimate_runs([planned_run(config())], [], executor="local", probe=True)
    timed = re.search(r"^~([\d.e+]+) img/s timed here: .*, (\d+) training steps in ([\d.]+) s, which varied ±(\d+)%",
                      e.basis)
    assert timed, e.basis
    assert int(timed[2]) >= MIN_STEPS and float(timed[3]) >= MIN_SECONDS * 0.99  # seconds of steps, not a few steps
    # printed to the digits the spread allows, never more
    shown = timed[1].replace(".", "").lstrip("0").rstrip("0")
    assert len(shown) <= est.digits(e.spread)
    assert est.rounded(754.3, 0.1) == 750 and est.rounded(754.3, 0.5) == 800 and est.rounded(754.3, 0.01) == 754


def test_an_estimate_without_any_known_speed_prints_no_total_and_plain_words(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("name: s\nbase: {data: {name: digits, img_size: 16}, model.name: resnet_tiny_32, device: cpu}\n"
                    "seeds: [0, 1]\n")
    res = runner.invoke(app, ["run", str(spec), "--dry-run", "--executor", "local", "--db",
                              f"sqlite:///{tmp_path / 'none.db'}"])
    assert res.exit_code == 0, res.output
    assert "0:00:00" not in res.stderr and "no estimate: the speed of the 2 runs is unknown" in res.stderr
    for jargon in ("no basis", "process(es)", "GPU(s)", "run(s)"):
        assert jargon not in res.stderr, jargon
    assert "no GPU and 1 process per run" in res.stderr


def test_the_estimate_and_the_launcher_share_one_thread_rule(monkeypatch):
    from harness.launch import estimate as est
    from harness.launch.executors import threads_per_run

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert est.target_for("local", True, max_parallel=2, threads=3).threads == 3 == threads_per_run(3, "local", 2)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    # OMP_NUM_THREADS set: the launcher forces nothing, and the probe must not force the cores split either
    assert threads_per_run(None, "local", 1) is None and est.target_for("local", True).threads is None
    assert est.target_for("local", True).device == "cpu (1 thread)"


def test_figure_1_says_truly_why_it_has_no_point_of_ours(sqlite_store, sqlite_url, tmp_path):
    from test_report_helpers import fake_top1, fill

    # the README's first run: distillation's quick profile, every run with throughput and top-1
    fill(sqlite_store, "distillation", "quick", fake_top1)
    res = runner.invoke(app, ["plot", "--figure", "1", "--out", str(tmp_path / "f1.png"), "--db", sqlite_url])
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[1] == (
        "only the paper's points: no finished run of model_size (Table 5's spec, whose runs Figure 1 draws) yet: "
        "harness run ablations/model_size.yaml --profile quick")
    fill(sqlite_store, "model_size", "quick", lambda run: {"top1": 70.0})  # no throughput measured
    res = runner.invoke(app, ["plot", "--figure", "1", "--out", str(tmp_path / "f1.png"), "--db", sqlite_url])
    assert "none of the" in res.stdout and "'paper' protocol throughput" in res.stdout


def test_an_unknown_profile_and_a_missing_detect_are_one_true_line(sqlite_store, sqlite_url, tmp_path):
    from test_report_helpers import fake_top1, fill

    fill(sqlite_store, "distillation", "quick", fake_top1)
    for args in (["report", "--table", "3", "--profile", "nosuch"],
                 ["plot", "--figure", "1", "--out", str(tmp_path / "f.png"), "--profile", "nosuch"]):
        res = runner.invoke(app, args + ["--db", sqlite_url])
        assert res.exit_code == 2, res.output
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: no run of profile 'nosuch' in the store; its profiles: ")
        assert {"quick", "small"} <= set(lines[0].split("its profiles: ")[1].split(", ")), lines
    assert runner.invoke(app, ["report", "--table", "3", "--profile", "quick", "--db", sqlite_url]).exit_code == 0
    res = runner.invoke(app, ["seeds", "distillation", "--db", sqlite_url])
    assert res.exit_code == 2
    assert res.output.strip() == "error: say which difference the seeds must resolve, in top-1 points: --detect 0.5, say"


@pytest.mark.slow
def test_a_stopped_run_says_so_plainly_and_its_log_shows_every_job_without_submitit_noise(tmp_path,
                                                                                           importable_by_jobs):
    """A run's job stopped by Ctrl-C (SIGINT), then retried: the launch says 'cancelled: stopped by SIGINT', not
    'FAILED: KeyboardInterrupt', and `harness logs` shows both jobs' lines, without submitit's bookkeeping."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    from harness.store import open_store
    from tests.test_lab_code import SPEC

    spec = tmp_path / "lab.yaml"
    spec.write_text(SPEC.replace("epochs: 2", "epochs: 12"))
    db, out = f"sqlite:///{tmp_path / 'store.db'}", str(tmp_path / "out")
    launch = subprocess.Popen([sys.executable, "-m", "harness", "run", str(spec), "--executor", "local", "--threads",
                               "1", "--db", db, "--output", out], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env=os.environ.copy())
    try:
        deadline = time.monotonic() + 120
        record = None
        while time.monotonic() < deadline:
            time.sleep(0.5)
            if os.path.exists(tmp_path / "store.db"):
                with open_store(db) as store:
                    found = store.runs(spec="lab")
                record = found[0] if found else None
                if record is not None and record.epoch is not None and record.epoch >= 1:
                    break
        assert record is not None and record.status == "running", record
        job = psutil.Process(int(record.job_id.split(":")[-1]))
        for process in [job, *job.children(recursive=True)]:
            process.send_signal(signal.SIGINT)  # what Ctrl-C in the job's terminal sends
        said, _ = launch.communicate(timeout=120)
    finally:
        if launch.poll() is None:
            launch.kill()
    assert "FAILED" not in said and "KeyboardInterrupt" not in said, said
    assert "cancelled: stopped by SIGINT (Ctrl-C)" in said, said
    retried = runner.invoke(app, ["retry", "lab", "--failed", "--executor", "local", "--threads", "1", "--db", db,
                                  "--output", out])
    assert retried.exit_code == 0, retried.output
    shown = runner.invoke(app, ["logs", record.hash[:10], "--db", db, "--output", out])
    assert shown.exit_code == 0, shown.output
    text = shown.stdout
    assert text.count("### job ") == 2 and "the run's job 1 of 2" in text and "the run's job 2 of 2" in text, text
    assert "submitit INFO" not in text and "Loading pickle" not in text, text
    assert text.count(f"run {record.hash} starts on ") == 2
    epochs = [line for line in text.splitlines() if line.startswith("epoch ")]
    assert epochs[-1].startswith("epoch 11 of 12") and len(epochs) >= 12, text


# words of the harness's developers that no help text of a researcher's command should hold
JARGON = ("typer", "registers its own", "pickle", "submitit", "(s)", "(es)", "token", "no basis", "RunJob")


def _commands(group, prefix=()):  # type: ignore[no-untyped-def]
    import typer.main

    click_group = typer.main.get_command(group) if not hasattr(group, "commands") else group
    for name, command in click_group.commands.items():
        if hasattr(command, "commands"):
            yield from _commands(command, prefix + (name,))
        else:
            yield prefix + (name,)


def test_every_command_s_help_speaks_to_a_researcher():
    top = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert top.exit_code == 0
    opening = [line.strip() for line in top.stdout.splitlines() if line.strip()][1]
    assert opening.startswith("Train the runs of an ablation spec"), opening
    commands = list(_commands(app))
    assert ("export", "mlflow") in commands and ("run",) in commands and len(commands) >= 14
    for command in commands:
        text = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"}).stdout
        for word in JARGON:
            assert word not in text, (command, word)
    imported = runner.invoke(app, ["import", "--help"], env={"COLUMNS": "200"}).stdout
    assert "optionally label, profile and seed" in imported  # not eaten as markup


def test_a_rough_wall_time_is_printed_roughly():
    from harness.launch.estimate import duration

    assert duration(2000.0, 0.58) == "~30 min" and duration(2000.0, 0.1) == "~33 min"
    assert duration(40000.0, 0.1) == "~11 h" and duration(2000.0, 0.0) == "0:33:20"
