"""What the stored runs cost: GPU-hours (and CPU core-hours) from each run's stored training time, process count
and threads.

A completed run stores `final["train_time_s"]` (seconds spent in training epochs, summed over requeues; evaluation
and start-up not included), `info["world_size"]` (processes, one GPU each on a GPU) and `info["device"]` ("cpu (N
threads)" or the GPU's name). A GPU run costs train_time_s × world_size / 3600 GPU-hours; a CPU run costs no GPU
time and is counted in core-hours instead: train_time_s × world_size × its torch threads (from "cpu (N threads)";
one where the device does not say) / 3600. Imported results and runs that stored no training time
cost nothing here: the store does not know what they took.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterable

import pandas as pd

from harness.report.runs import PAPER_SCALE, RunSet, defined_profiles, load

# what the trainer stores as a CPU run's device (harness/trainer/final.py)
CPU_THREADS = re.compile(r"^cpu \((\d+) threads?\)")


@dataclass(frozen=True)
class RunCost:
    gpu_h: float
    # CPU core-hours: hours × processes × threads
    cpu_h: float

    @property
    def known(self) -> bool:
        return not math.isnan(self.gpu_h)


def run_cost(run: Any) -> RunCost:
    """One run's GPU-hours and CPU core-hours (NaN when it stored no training time)."""
    seconds = (run.final or {}).get("train_time_s")
    if getattr(run, "source", None) is not None or seconds is None or math.isnan(seconds):
        return RunCost(math.nan, math.nan)
    info = getattr(run, "info", None) or {}
    try:
        processes = max(1, int(info.get("world_size", 1)))
    except ValueError:
        processes = 1
    hours = seconds * processes / 3600
    device = str(info.get("device", "cpu"))
    if device.startswith("cpu"):
        threads = CPU_THREADS.match(device)
        return RunCost(0.0, hours * (int(threads.group(1)) if threads else 1))
    return RunCost(hours, 0.0)


def total(runs: Iterable[Any]) -> RunCost:
    """Summed cost of distinct runs (a run filling two cells counts once); NaN when none stored its time."""
    costs = [run_cost(r) for r in {r.hash: r for r in runs}.values()]
    known = [c for c in costs if c.known]
    if not known:
        return RunCost(math.nan, math.nan)
    return RunCost(sum(c.gpu_h for c in known), sum(c.cpu_h for c in known))


def hours_text(cost: RunCost) -> str | None:
    """'1.23 GPU-h', '0.0123 core-h' (a CPU-only cost, in core-hours), or None when unknown."""
    if not cost.known:
        return None
    if cost.gpu_h > 0 or cost.cpu_h == 0:
        return f"{cost.gpu_h:.3g} GPU-h"
    return f"{cost.cpu_h:.3g} core-h"


def spec_costs(db: str | None = None, runset: RunSet | None = None, store: Any = None) -> pd.DataFrame:
    """One line per spec and profile of our completed runs: runs, runs with a stored time, GPU-hours, core-hours;
    and a last line `total` over distinct runs (a run shared by two specs counts once there)."""
    runset = runset if runset is not None else load(db, store)
    records = []
    everything: list[Any] = []
    profiles = defined_profiles(runset)
    for spec in runset.spec_names():
        ours = [r for r in runset.in_specs([spec]) if getattr(r, "source", None) is None]
        # runs of no profile are paper scale only beside a spec's smaller profiles; a lab's spec may have none
        unnamed = PAPER_SCALE if profiles.get(spec, {"?"}) else "none"
        for profile in sorted({r.profile or "" for r in ours}):
            members = [r for r in ours if (r.profile or "") == profile]
            everything += members
            records.append(_line(spec, profile or unnamed, members))
    records.append(_line("total", "", everything))
    return pd.DataFrame.from_records(records, columns=["spec", "profile", "runs", "timed", "gpu_h", "cpu_h"])


def _line(spec: str, profile: str, runs: list[Any]) -> dict[str, Any]:
    cost = total(runs)
    distinct = {r.hash: r for r in runs}.values()
    timed = sum(run_cost(r).known for r in distinct)
    return {"spec": spec, "profile": profile, "runs": len(distinct), "timed": timed,
            "gpu_h": 0.0 if not cost.known else cost.gpu_h, "cpu_h": 0.0 if not cost.known else cost.cpu_h}


def format_costs(df: pd.DataFrame) -> str:
    """The per-spec cost table as aligned text."""
    lines = [f"{'spec':<20}  {'profile':<12}  {'runs':>5}  {'timed':>5}  {'GPU-h':>10}  {'core-h':>10}"]
    for r in df.itertuples(index=False):
        lines.append(f"{r.spec:<20}  {r.profile:<12}  {r.runs:>5}  {r.timed:>5}  {r.gpu_h:>10.3f}  {r.cpu_h:>10.3f}")
    lines.append("Completed runs of ours, from their stored training time (epochs only): GPU runs in GPU-hours "
                 "(× processes), CPU runs in core-hours (× processes × threads).")
    return "\n".join(lines)
