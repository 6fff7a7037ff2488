"""Helpers for the report tests: fill a real temporary store through the store API, as the launcher does.

`fill(store, spec_path, profile, metrics)` registers the spec's planned runs, marks them completed and logs
final metrics, per-epoch curves and (for Table 4) validation predictions. No model is trained: the values are
given by the test, so each test knows exactly what every table cell must show.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from tests.runstate import TEST_OWNER, drive

ROOT = Path(__file__).resolve().parents[1]

MetricsFn = Callable[[object], dict[str, float]]


def planned(spec: str, profile: str | None):
    from harness.spec import expand, load_spec

    loaded = load_spec(ROOT / "ablations" / f"{spec}.yaml")
    return loaded, expand(loaded, profile)


def fill(store, spec: str, profile: str | None, metrics: MetricsFn, epochs: int = 3,
         predictions: Callable[[object], dict[str, np.ndarray]] | None = None,
         ending: Callable[[object], str] | None = None,
         provenance: Callable[[object], dict] | None = None) -> list:
    """Register and complete every run of `spec`/`profile` (or end it as `ending(run)` says: completed,
    failed or cancelled); returns the PlannedRuns."""
    loaded, runs = planned(spec, profile)
    store.register_experiment(loaded.spec.name, loaded.text, loaded.path)
    store.register_runs(loaded.spec.name, runs)
    for run in runs:
        final = metrics(run)
        if store.get_run(run.hash).status == "completed":
            continue  # a run another spec shares, completed already
        drive(store, run.hash, "running", provenance=provenance(run) if provenance else None)
        for epoch in range(epochs):
            curve = {k: v * (epoch + 1) / epochs for k, v in final.items() if k.startswith("top1")}
            store.log_epoch(run.hash, epoch, {"train_loss": 2.0 - epoch * 0.3, **curve})
        store.log_final(run.hash, final, {"device": "cpu (test)", "top1_unit": "percent"})
        for name, array in (predictions(run) if predictions else {}).items():
            store.log_predictions(run.hash, name, array)
        assert store.finish(run.hash, TEST_OWNER.token, ending(run) if ending else "completed")
    return runs


def fake_top1(run) -> dict[str, float]:
    """Deterministic metrics: a base per variant, +1 per seed; distillation-token runs get all three heads."""
    base = {"teacher": 97.0, "no_distillation": 70.0, "usual_distillation": 71.0, "hard_distillation": 73.0,
            "deit_distilled": 75.0, "deit": 70.0}.get(run.variant, 60.0)
    top1 = base + run.seed
    out = {"top1": top1, "params": 5.5e6, "throughput_paper_img_s": 1000.0 + run.seed}
    if run.config.model.distillation_token:
        out.update(top1_cls=top1 - 1.0, top1_dist=top1 - 0.5)
    if run.config.distillation.kind != "none":
        out["teacher_top1"] = 90.0
    if run.config.ema.enabled:  # the trainer evaluates the EMA weights too
        out["ema_top1"] = top1 + 0.5
    return out
