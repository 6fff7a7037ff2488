"""How fast the results store writes metrics and loads runs, against plain sqlite3.

    python benchmarks/store_speed.py [--db URL] [--runs 10000] [--epochs 40]

Prints, in one run: per-epoch metric rows/s written through `Store.log_epoch` (one transaction per
call, as a training job writes them) against plain `sqlite3.executemany` of the same rows in one
transaction, the time `harness.results.runs` takes to load the runs into a DataFrame, and the time of a
filtered query evaluated in the database (`harness.results.runs(where=FILTER)`); each figure with its CPU time.
Targets: >= 20,000 rows/s through the store; <= 1 s (and <= 0.3 s of CPU) for 10,000 runs. The default store is a
temporary SQLite file; --db measures another (PostgreSQL: an empty database it may fill).

Smallest run: python benchmarks/store_speed.py --runs 20 --write-runs 2 --epochs 3
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.spec import PlannedRun  # noqa: E402
from harness.store import open_store  # noqa: E402

# the trainer's per-epoch metrics for a distillation-token model
METRICS = ["train_loss", "lr", "val_loss", "top1", "top5", "top1_cls", "top5_cls", "top1_dist", "top5_dist",
           "ema_top1", "ema_top5"]
FINAL = METRICS + ["params", "flops", "train_time_s", "train_img_s", "peak_mem_mb", "throughput_paper_img_s"]
FILTER = "top1 > 80 and model.name == 'deit_tiny_patch4_32' and distillation.kind in ('hard', 'soft')"
MODELS = ["deit_tiny_patch4_32", "deit_small_patch4_32", "deit_tiny_patch16_224"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="store URL (default: a temporary SQLite file)")
    parser.add_argument("--runs", type=int, default=10_000, help="runs loaded into a DataFrame")
    parser.add_argument("--write-runs", type=int, default=20, help="runs whose epochs are written")
    parser.add_argument("--epochs", type=int, default=100, help="epochs written per run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.db or f"sqlite:///{Path(tmp) / 'bench.db'}"
        store = open_store(url)
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"store: {store.display_url}; {os.cpu_count()} CPUs, load average {load} (other work slows the figures)")
        planned = make_runs(args.runs)
        t0, c0 = time.perf_counter(), time.process_time()
        store.register_experiment("bench", "", "")
        store.register_runs("bench", planned)
        print(f"register {len(planned):,} runs: {time.perf_counter() - t0:.2f} s ({time.process_time() - c0:.2f} s of CPU)")

        rows = [(run.hash, epoch, {m: epoch + i / 10 for i, m in enumerate(METRICS)})
                for run in planned[:args.write_runs] for epoch in range(args.epochs)]
        n_rows = len(rows) * len(METRICS)
        t0, c0 = time.perf_counter(), time.process_time()
        for run_hash, epoch, metrics in rows:
            store.log_epoch(run_hash, epoch, metrics)
        store_s, store_cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"store.log_epoch: {n_rows:,} metric rows in {len(rows):,} calls: {store_s:.2f} s = "
              f"{n_rows / store_s:,.0f} rows/s (one transaction per epoch; {store_cpu:.2f} s of CPU)")

        flat = [(i, epoch, name, value) for i, (_, epoch, metrics) in enumerate(rows)
                for name, value in metrics.items()]
        raw = sqlite3.connect(Path(tmp) / "plain.db")
        raw.execute("PRAGMA journal_mode=WAL")
        raw.execute("PRAGMA synchronous=NORMAL")
        raw.execute("CREATE TABLE metrics (run_id INTEGER, epoch INTEGER, name TEXT, value REAL, "
                    "PRIMARY KEY (run_id, epoch, name))")
        t0, c0 = time.perf_counter(), time.process_time()
        with raw:
            raw.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?)", flat)
        plain_s = time.perf_counter() - t0
        raw.close()
        print(f"sqlite3.executemany: {n_rows:,} rows in one transaction: {plain_s:.3f} s = "
              f"{n_rows / plain_s:,.0f} rows/s ({time.process_time() - c0:.3f} s of CPU)")

        t0, c0 = time.perf_counter(), time.process_time()
        for i, run in enumerate(planned[: min(len(planned), 2000)]):
            store.log_final(run.hash, {m: 60.0 + i % 30 if m == "top1" else 1.0 for m in FINAL}, {"device": "cpu"})
        print(f"log_final for {min(len(planned), 2000):,} runs: {time.perf_counter() - t0:.2f} s "
              f"({time.process_time() - c0:.2f} s of CPU)")

        import harness.results as results

        t0, c0 = time.perf_counter(), time.process_time()
        df = results.runs(store)
        load_s, load_cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"harness.results.runs: {len(df):,} runs x {df.shape[1]} columns into a DataFrame: {load_s:.2f} s "
              f"({load_cpu:.2f} s of CPU)")
        t0, c0 = time.perf_counter(), time.process_time()
        chosen = results.runs(store, where=FILTER)
        print(f"harness.results.runs(where=\"{FILTER}\"): {len(chosen):,} of {len(df):,} runs in "
              f"{time.perf_counter() - t0:.3f} s ({time.process_time() - c0:.3f} s of CPU)")
        store.close()
        ok = n_rows / store_s >= 20_000 and load_s <= 1.0 and load_cpu <= 0.3
        print(f"targets (>= 20,000 rows/s, <= 1 s and <= 0.3 s of CPU to load): {'met' if ok else 'NOT met'}")


def make_runs(n: int) -> list[PlannedRun]:
    from harness.config import DataConfig, ModelConfig, RunConfig, run_hash

    runs = []
    base = RunConfig(model=ModelConfig(name="deit_tiny_patch16_224"), data=DataConfig(name="digits"))
    for i in range(n):
        # three models and three distillation kinds, so that a filter on them keeps some runs and leaves others
        config = base.model_copy(update={
            "seed": i, "model": base.model.model_copy(update={"name": MODELS[i % 3]}),
            "distillation": base.distillation.model_copy(update={"kind": ["none", "soft", "hard"][i // 3 % 3]})})
        runs.append(PlannedRun(hash=run_hash(config), config=config, spec="bench", profile=None,
                               variant=f"v{i % 6}", label=f"Variant {i % 6}",
                               coords={"distillation.kind": ["none", "soft", "hard"][i // 3 % 3]}, seed=i))
    return runs


if __name__ == "__main__":
    main()
