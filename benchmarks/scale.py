"""How the cost of a query, a load, a status, a report and a plan grows with the store, against MLflow's search_runs.

Smallest run: python benchmarks/scale.py --sizes 100,300 --epochs 1 --repeat 1

    python benchmarks/scale.py [--sizes 1000,10000,100000] [--db postgresql+psycopg://.../EMPTY_DB] [--epochs 3]

For each size N it builds a store of N runs (the quick Table 3 runs of ablations/distillation.yaml, completed,
plus N - 5 runs of other specs with DeiT-shaped configs, 17 final metrics and --epochs epochs of 11 per-epoch
metrics each) and prints the wall time (best of --repeat) and the CPU time of: a filtered query
(`harness.results.runs(where=FILTER)`), loading every run into a DataFrame, `status` of the distillation spec,
`report --table 3 --profile quick`, and `run --dry-run` of a 100-run spec; then the growth factor from one size
to the next. Beside the filtered query it times MLflow's `search_runs` with the same filter on an MLflow SQLite
tracking store holding the same runs (config keys as params, the same metrics), when mlflow is importable.

The default store is a temporary SQLite file per size; --db measures PostgreSQL instead: give an empty database,
which the benchmark empties (drops and recreates its `public` schema) before each size.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

REPO = Path(__file__).resolve().parent.parent
FILTER = "top1 > 80 and model.name == 'deit_tiny_patch4_32' and distillation.kind in ('hard', 'soft')"
# the same runs: MLflow's filters have no IN over params (nor OR), and the kinds are none, soft and hard
MLFLOW_FILTER = ("metrics.top1 > 80 and params.`model.name` = 'deit_tiny_patch4_32' "
                 "and params.`distillation.kind` != 'none'")
MODELS = ["deit_tiny_patch4_32", "deit_small_patch4_32", "deit_tiny_patch16_224", "deit_small_patch16_224",
          "deit_base_patch16_224", "deit_tiny_distilled_patch16_224"]
KINDS = ["none", "soft", "hard"]
METRICS = ["train_loss", "lr", "val_loss", "top1", "top5", "top1_cls", "top5_cls", "top1_dist", "top5_dist",
           "ema_top1", "ema_top5"]
FINAL = METRICS + ["params", "flops", "train_time_s", "train_img_s", "peak_mem_mb", "throughput_paper_img_s"]
# runs per spec of the filler (a lab's store: many specs of a few hundred to a thousand runs)
SPEC_RUNS = 1000
PLAN_SPEC = """
name: plan100
base:
  data: {name: digits, img_size: 16, num_workers: 0, train_subset: 64}
  model.name: resnet_tiny_32
  device: cpu
  schedule: {epochs: 1, warmup_epochs: 0}
axes:
  optimizer.base_lr: [0.0001, 0.0002, 0.0003, 0.0004, 0.0005, 0.0006, 0.0007, 0.0008, 0.0009, 0.001]
seeds: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
"""
OPS = ["query", "load", "status", "report", "plan"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="store sizes (runs), comma-separated")
    parser.add_argument("--db", help="an empty PostgreSQL database to fill (default: a temporary SQLite file)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of per-epoch metrics per run")
    parser.add_argument("--repeat", type=int, default=3, help="timings per figure (the best is kept)")
    parser.add_argument("--no-mlflow", action="store_true", help="skip MLflow's search_runs")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    mlflow_note = None if not args.no_mlflow else "skipped (--no-mlflow)"
    if mlflow_note is None:
        try:
            import mlflow  # noqa: F401
        except ImportError:
            mlflow_note = "skipped: mlflow is not importable (pip install 'deit-harness[mlflow]')"
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{os.cpu_count()} CPUs, load average {load} (other work slows the wall times; CPU times are this "
          f"process's own)\nfilter: {FILTER}")
    results: list[dict[str, tuple[float, float]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            url = args.db or f"sqlite:///{Path(tmp) / f'harness-{size}.db'}"
            if args.db:
                _empty_postgres(args.db)
            t0 = time.perf_counter()
            chosen = build_store(url, size, args.epochs)
            print(f"\n{size:,} runs: built {_display(url)} in {time.perf_counter() - t0:.0f} s; the filter keeps "
                  f"{chosen} runs")
            figures = measure(url, Path(tmp), args.repeat)
            if mlflow_note is None:
                t0 = time.perf_counter()
                mlflow_uri = build_mlflow(Path(tmp) / f"mlflow-{size}.db", size, args.epochs)
                figures["mlflow query"], found = time_mlflow(mlflow_uri, args.repeat)
                print(f"  (MLflow SQLite store built in {time.perf_counter() - t0:.0f} s; search_runs finds {found})")
            for name, (wall, cpu) in figures.items():
                print(f"  {name:<13} {wall:8.3f} s  ({cpu:.3f} s of CPU)")
            results.append(figures)
    print_growth(sizes, results, mlflow_note)


def measure(url: str, tmp: Path, repeat: int) -> dict[str, tuple[float, float]]:
    import harness.results as r
    from harness.launch.status import statuses
    from harness.report import output as rendering
    from harness.report.runs import load
    from harness.store import open_store

    spec_path = tmp / "plan100.yaml"
    spec_path.write_text(PLAN_SPEC)
    figures = {}
    with open_store(url) as store:
        print(f"  harness.results.runs(where=FILTER) finds {len(r.runs(store, where=FILTER))}")
        figures["query"] = best(lambda: r.runs(store, where=FILTER), repeat)
        figures["load"] = best(lambda: r.runs(store), repeat)
        figures["status"] = best(lambda: statuses(store, spec="distillation"), repeat)
        figures["report"] = best(lambda: rendering.tables_text([3], "markdown", load(store=store), profile="quick"),
                                 repeat)
    figures["plan"] = best(lambda: _dry_run(spec_path, url), repeat)
    return figures


def _dry_run(spec_path: Path, url: str) -> None:
    from typer.testing import CliRunner

    from harness.cli import app

    result = CliRunner().invoke(app, ["run", str(spec_path), "--dry-run", "--executor", "local", "--db", url])
    assert result.exit_code == 0 and "100 runs" in result.output, result.output


def best(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """(wall, CPU) seconds of the fastest of `repeat` calls."""
    times = []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        times.append((time.perf_counter() - t0, time.process_time() - c0))
    return min(times)


def print_growth(sizes: list[int], results: list[dict[str, tuple[float, float]]], mlflow_note: str | None) -> None:
    names = list(results[0]) if results else []
    for title, part in (("wall", 0), ("CPU", 1)):
        print(f"\n{title} seconds by store size (growth factor from the size before):")
        print(f"{'':<13}" + "".join(f"{n:>22,}" for n in sizes))
        for name in names:
            cells = []
            for i, figures in enumerate(results):
                value = figures[name][part]
                growth = f" (x{value / max(results[i - 1][name][part], 1e-6):.1f})" if i else ""
                cells.append(f"{value:.3f}{growth}")
            print(f"{name:<13}" + "".join(f"{c:>22}" for c in cells))
    if mlflow_note:
        print(f"mlflow query: {mlflow_note}")
    elif results:
        ratios = ", ".join(f"{n:,}: x{f['mlflow query'][0] / f['query'][0]:.1f}" for n, f in zip(sizes, results))
        print(f"MLflow search_runs time / harness filtered query time: {ratios}")


# -- building the stores ----------------------------------------------------------------------------------------


def runs_of(size: int) -> list[dict[str, Any]]:
    """`size` - 5 filler runs: config, final metrics and the spec they belong to (deterministic)."""
    from harness.config import DataConfig, ModelConfig, RunConfig

    base = RunConfig(model=ModelConfig(name="deit_tiny_patch16_224"), data=DataConfig(name="digits")).as_json()
    rng = random.Random(0)
    out = []
    for i in range(max(size - 5, 0)):
        config = {**base, "model": {**base["model"], "name": MODELS[i % len(MODELS)]},
                  "distillation": {**base["distillation"], "kind": KINDS[(i // len(MODELS)) % 3]},
                  "optimizer": {**base["optimizer"], "base_lr": [5e-4, 1e-3, 2.5e-4, 1e-4][(i // 18) % 4]},
                  "seed": i % 5}
        top1 = rng.uniform(55.0, 85.0)
        final = {name: top1 if name.startswith("top1") or name == "ema_top1" else rng.uniform(0, 100)
                 for name in FINAL}
        out.append({"hash": hashlib.sha256(f"run {i}".encode()).hexdigest(), "config": config, "final": final,
                    "spec": f"spec{i // SPEC_RUNS:04d}", "variant": f"v{i % 6}"})
    return out


def build_store(url: str, size: int, epochs: int) -> int:
    """The harness store; returns how many runs the filter keeps (from the generated data, not the store)."""
    from sqlalchemy import insert, select

    from harness.spec import expand, load_spec
    from harness.store import NewRun, open_store
    from harness.store.schema import Metric, Run

    runs = runs_of(size)
    with open_store(url) as store:
        quick = expand(load_spec(REPO / "ablations" / "distillation.yaml"), "quick")
        store.import_runs("distillation", [NewRun(
            hash=p.hash, config=p.config.as_json(), profile=p.profile, variant=p.variant, label=p.label,
            coords=dict(p.coords), seed=p.seed, status="completed", final={"top1": 50.0 + i, "train_img_s": 500.0},
            info={"device": "cpu"}, depends_on=p.depends_on) for i, p in enumerate(quick)])
        for start in range(0, len(runs), 5000):
            chunk = runs[start:start + 5000]
            by_spec: dict[str, list[NewRun]] = {}
            for run in chunk:
                by_spec.setdefault(run["spec"], []).append(NewRun(
                    hash=run["hash"], config=run["config"], profile="quick", variant=run["variant"],
                    label=run["variant"], coords={}, seed=run["config"]["seed"], status="completed",
                    final=run["final"], info={"device": "cuda"}))
            for spec, news in by_spec.items():
                store.import_runs(spec, news)
        # per-epoch metrics in bulk (a training job writes them epoch by epoch through Store.log_epoch)
        with store.engine.begin() as conn:
            ids = dict(conn.execute(select(Run.hash, Run.id)).all())
            rows = [{"run_id": ids[run["hash"]], "epoch": e, "name": m, "value": run["final"][m] * (e + 1) / epochs}
                    for run in runs for e in range(epochs) for m in METRICS]
            for start in range(0, len(rows), 50_000):
                conn.execute(insert(Metric), rows[start:start + 50_000])
    return sum(r["final"]["top1"] > 80 and r["config"]["model"]["name"] == "deit_tiny_patch4_32"
               and r["config"]["distillation"]["kind"] in ("hard", "soft") for r in runs)


def build_mlflow(path: Path, size: int, epochs: int) -> str:
    """An MLflow SQLite tracking store with the same runs: each config key a param, the same metrics (the rows
    are inserted in bulk into MLflow's own tables, as MlflowClient.log_batch would leave them)."""
    import logging

    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlParam, SqlRun
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from sqlalchemy import insert

    from harness import dotted

    for name in ("alembic", "mlflow"):
        logging.getLogger(name).setLevel(logging.WARNING)
    uri = f"sqlite:///{path}"
    tracking = SqlAlchemyStore(uri, str(path.parent / "mlartifacts"))
    experiment = tracking.create_experiment("bench")
    now = int(time.time() * 1000)
    runs = runs_of(size)
    with tracking.engine.begin() as conn:
        conn.execute(insert(SqlRun), [{"run_uuid": r["hash"][:32], "name": r["hash"][:8], "source_type": "LOCAL",
                                       "status": "FINISHED", "start_time": now, "end_time": now, "user_id": "bench",
                                       "lifecycle_stage": "active", "experiment_id": int(experiment),
                                       "artifact_uri": ""} for r in runs])
        for table, make in (
                (SqlParam, lambda r: [{"key": k, "value": str(v), "run_uuid": r["hash"][:32]}
                                      for k, v in dotted.flatten(r["config"]).items()]),
                (SqlLatestMetric, lambda r: [{"key": k, "value": v, "timestamp": now, "step": epochs - 1,
                                              "is_nan": False, "run_uuid": r["hash"][:32]}
                                             for k, v in r["final"].items()]),
                (SqlMetric, lambda r: [{"key": m, "value": r["final"][m] * (e + 1) / epochs, "timestamp": now,
                                        "step": e, "is_nan": False, "run_uuid": r["hash"][:32]}
                                       for e in range(epochs) for m in METRICS])):
            rows: list[dict[str, Any]] = []
            for run in runs:
                rows += make(run)
                if len(rows) >= 50_000:
                    conn.execute(insert(table), rows)
                    rows = []
            if rows:
                conn.execute(insert(table), rows)
    tracking.engine.dispose()
    return uri


def time_mlflow(uri: str, repeat: int) -> tuple[tuple[float, float], int]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("bench").experiment_id
    found = []
    timing = best(lambda: found.append(len(client.search_runs([experiment], filter_string=MLFLOW_FILTER,
                                                              max_results=50_000))), repeat)
    return timing, found[-1]


def _empty_postgres(url: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def _display(url: str) -> str:
    from harness.store.db import display_url

    return display_url(url)


if __name__ == "__main__":
    main()
