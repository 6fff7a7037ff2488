"""What a plan will cost before it is spent: wall time and GPU-hours per run, and what each estimate rests on.

A run's training time is epochs × images per epoch / training images per second:

- **images per epoch** come from the training-set size, known without loading any data: the sizes of the
  in-memory datasets (`TRAIN_IMAGES`; a test checks them against the trainer's builders), `data.train_subset`,
  or the files under an imagefolder's `train/`; then the trainer's sampler arithmetic (repeated augmentation
  keeps an epoch at the dataset's size, rounded down to 256 images; the loader drops the last partial batch);
- **images per second** come from completed runs in the store with the same model, resolution, batch size,
  precision and teacher, on the same device with the same number of processes (`final["train_img_s"]`, the
  median over those runs); their wall time over training time (evaluation, start-up, the throughput measurement)
  scales training time to wall time. Or, with `probe`, from timing a few training steps of each model
  on this machine (`harness.launch.probe`), which covers training steps only.

A run with neither basis gets no estimate and says so. What is printed is rounded to what the speed is known to:
a probe says how much its steps varied, runs measured how far apart they were. GPU-hours are wall time × the GPUs a run holds on the
executor (SLURM: nodes × GPUs per node; local: the run's `gpus` where the machine has GPUs, none on CPU).
"""

from __future__ import annotations

import math
import os
import shutil
import statistics
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from harness.config import RunConfig
from harness.launch.executors import local_gpu_ids, resolve_executor, threads_per_run
from harness.launch.probe import probe, probe_length
from harness.launch.protocols import RunStore
from harness.states import RunState
from harness.store.records import RunRecord
from harness.words import clock, count

# training images of the in-memory datasets: digits keeps 80% of scikit-learn's 1,797 images (the rest validate)
TRAIN_IMAGES = {"digits": 1437, "fashion_mnist": 60000}
SYNTHETIC_DEFAULT = 4096
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".jpe")
# timm's RepeatAugSampler keeps an epoch at the dataset's size rounded down to a multiple of this
RA_ROUND = 256


@lru_cache(maxsize=32)
def _count_images(folder: str) -> int:
    return sum(1 for _, _, files in os.walk(folder) for f in files if f.lower().endswith(IMAGE_SUFFIXES))


def train_set_size(config: RunConfig) -> tuple[int | None, str]:
    """(training images, how that is known) without loading any data; None where it cannot be known here."""
    d = config.data
    if d.name == "synthetic":
        return d.train_subset or SYNTHETIC_DEFAULT, "synthetic set size"
    if d.name in TRAIN_IMAGES:
        full, how = TRAIN_IMAGES[d.name], f"{d.name}: {TRAIN_IMAGES[d.name]} training images"
    elif d.name == "imagefolder" and d.root and (Path(d.root) / "train").is_dir():
        full = _count_images(str(Path(d.root) / "train"))
        how = f"{full} image files under {Path(d.root) / 'train'}"
    else:
        return None, f"size of {d.name} {d.root or ''} unknown here".replace("  ", " ")
    if d.train_subset is not None and d.train_subset < full:
        return d.train_subset, f"{how}, subset {d.train_subset}"
    return full, how


def images_per_epoch(train_images: int, config: RunConfig, world_size: int = 1) -> int:
    """Images one epoch trains on, over all processes: the trainer's sampler and drop-last loader, as arithmetic."""
    if config.augment.repeated_aug:
        if train_images >= RA_ROUND:
            per_rank = train_images // RA_ROUND * RA_ROUND // world_size
        else:
            per_rank = math.ceil(train_images / world_size)
        per_rank = min(per_rank, math.ceil(train_images * config.augment.repeated_aug_repeats / world_size))
    else:
        per_rank = math.ceil(train_images / world_size)
    batch = config.batch_size // world_size
    return per_rank // batch * batch * world_size


# ---------------------------------------------------------------------------------------------------------------
# where runs will train


@dataclass(frozen=True)
class Target:
    """Where the planned runs would train."""

    executor: str
    # the device name a completed run stores in info["device"]; None: any GPU (SLURM nodes are not known here)
    device: str | None
    # GPUs one run holds, and the processes it runs (one per GPU)
    gpus: int
    world_size: int = 1
    # CPU threads of one local run (the launcher splits the cores between parallel runs)
    threads: int | None = None

    def runs_on(self, stored_device: str) -> bool:
        if self.device is None:
            return not stored_device.startswith("cpu")
        if self.device == "cpu":
            return stored_device.startswith("cpu")
        return stored_device == self.device

    @property
    def describe(self) -> str:
        where = self.device or ("a GPU of the cluster's" if self.executor == "slurm" else "this machine's GPUs")
        gpus = "no GPU" if not self.gpus else count(self.gpus, "GPU")
        return f"{self.executor} executor, {where}, {gpus} and {count(self.world_size, 'process', 'processes')} per run"


def local_gpu_name() -> str | None:
    """The name of this machine's first GPU (as torch reports it), None without one."""
    ids = local_gpu_ids()
    if not ids or not shutil.which("nvidia-smi"):
        return None
    out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader", "-i", str(ids[0])],
                         capture_output=True, text=True, check=False)
    return out.stdout.strip() or None


def target_for(executor: str, runs_cpu: bool, max_parallel: int = 1, slurm: Any = None,
               gpu_name: str | None = None, threads: int | None = None, processes: int = 1) -> Target:
    """The target of `harness run`: `executor` resolved, `runs_cpu` when the runs ask for device: cpu, `threads`
    the --threads option, `processes` the devices each run trains on (`RunConfig.devices`: a CPU run's
    processes, a GPU run's GPUs)."""
    name = resolve_executor(executor)
    if name == "slurm" and slurm is not None:
        gpus = slurm.nodes * slurm.gpus_per_node
        return Target(name, "cpu" if runs_cpu or not gpus else None, 0 if runs_cpu else gpus,
                      slurm.nodes * slurm.tasks_for(processes))
    gpu = None if runs_cpu else (gpu_name or local_gpu_name())
    if gpu or (not runs_cpu and name == "local" and local_gpu_ids()):
        # one process per GPU; a GPU whose name is unknown here is any GPU to the speeds measured
        return Target(name, gpu, processes, processes)
    # the launcher's rule; None: torch's own choice (OMP_NUM_THREADS), which the trainer stores as it found it
    chosen = threads_per_run(threads, name, max_parallel)
    shown = chosen or _torch_threads()
    return Target(name, f"cpu ({count(shown, 'thread')})", 0, processes, chosen)


def _torch_threads() -> int:
    """The threads torch takes without being told (OMP_NUM_THREADS when set, else the cores)."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return os.cpu_count() or 1


# ---------------------------------------------------------------------------------------------------------------
# training speed: measured by completed runs, or probed here


def speed_key(config: dict[str, Any]) -> tuple[Any, ...]:
    """What training speed depends on: model (and distillation token), resolution, batch, precision, teacher."""
    model, data, dist = config.get("model") or {}, config.get("data") or {}, config.get("distillation") or {}
    teacher = (dist.get("teacher") or {}).get("model") if dist.get("kind", "none") != "none" else None
    return (model.get("name"), bool(model.get("distillation_token")), data.get("img_size"),
            config.get("batch_size"), config.get("precision", "fp32"), teacher)


def key_text(key: tuple[Any, ...]) -> str:
    name, token, size, batch, precision, teacher = key
    return (f"{name}{' + distillation token' if token else ''}, {size} px, batch {batch}, {precision}, "
            + (f"teacher {teacher}" if teacher else "no teacher"))


@dataclass(frozen=True)
class Speed:
    """Training images/s (all processes) and what it rests on; img_s None: not known."""

    img_s: float | None
    basis: str
    # wall time / training time of the runs measured (None: training time only)
    wall_ratio: float | None = None
    # how far the speed may be off, relative (a probe's spread between steps, the spread between measured runs);
    # what is printed is rounded to it
    spread: float = 0.0


def digits(spread: float) -> int:
    """Significant digits worth printing for a number known to within `spread` (relative)."""
    return 1 if spread >= 0.3 else 2 if spread >= 0.03 else 3


def rounded(value: float, spread: float) -> float:
    """`value` to the significant digits its spread allows (0.254 h ±10% -> 0.25)."""
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, digits(spread) - 1 - math.floor(math.log10(abs(value))))


def _wall_ratio(record: RunRecord) -> float | None:
    seconds = (record.final or {}).get("train_time_s")
    if not seconds or record.started_at is None or record.ended_at is None:
        return None
    return (record.ended_at - record.started_at).total_seconds() / seconds


def measured_speed(key: tuple[Any, ...], target: Target, records: Iterable[Any]) -> Speed | None:
    """The median training images/s of completed runs with this key on the target's device and process count."""
    found = []
    for r in records:
        info, img_s = r.info or {}, (r.final or {}).get("train_img_s")
        if r.status != RunState.COMPLETED or r.source is not None or not img_s or math.isnan(img_s):
            continue
        if speed_key(r.config) == key and target.runs_on(str(info.get("device", ""))) \
                and str(info.get("world_size", "1")) == str(target.world_size):
            found.append(r)
    if not found:
        return None
    ratios = [x for x in (_wall_ratio(r) for r in found) if x is not None and x >= 1.0]
    devices = sorted({r.info.get("device", "") for r in found})
    speeds = [r.final["train_img_s"] for r in found]
    img_s = statistics.median(speeds)
    spread = (max(speeds) - min(speeds)) / img_s
    basis = (f"{rounded(img_s, spread):g} img/s measured by {count(len(found), 'completed run')} of "
             f"{key_text(key)} on {', '.join(devices)} ({count(target.world_size, 'process', 'processes')})")
    ratio = statistics.median(ratios) if ratios else None
    basis += f"; wall = training × {ratio:.2f}, their wall/training ratio" if ratio else "; training time only"
    return Speed(img_s, basis, ratio, spread)


def probed_speed(config: RunConfig, key: tuple[Any, ...], target: Target) -> Speed:
    """Time the run's training step here (see `harness.launch.probe`): seconds on a GPU, minutes a model on a busy
    CPU, so each probe says what it times before it starts."""
    print(f"harness: timing {key_text(key)} here ({probe_length()})", file=sys.stderr, flush=True)
    try:
        timed = probe(config, target.world_size, threads=target.threads)
    except Exception as exc:  # out of memory, a model that cannot be built here: not known, and why
        return Speed(None, f"speed unknown: timing {key_text(key)} here failed: {type(exc).__name__}: "
                           f"{str(exc)[:120]}")
    img_s = timed.img_s * target.world_size
    here = target.device if target.device and target.device.startswith("cpu") else "this machine's device"
    scaled = f" × {target.world_size} processes (linear scaling assumed)" if target.world_size > 1 else ""
    return Speed(img_s, f"~{rounded(img_s, timed.spread):g} img/s timed here: {key_text(key)} on {here}{scaled}, "
                        f"{timed.steps} training steps in {timed.seconds:.1f} s, which varied ±{timed.spread / 2:.0%} "
                        f"(random images: no data loading, evaluation or start-up"
                        f"{'; without torch.compile, which the run uses' if config.compile else ''})",
                 spread=timed.spread)


def no_basis(key: tuple[Any, ...], target: Target) -> Speed:
    from harness.launch.probe import probe_length

    return Speed(None, f"speed unknown: the store holds no completed run of {key_text(key)} on "
                       f"{target.device or 'a GPU'} with {count(target.world_size, 'process', 'processes')}; "
                       f"add --probe to time its training here ({probe_length()})")


# ---------------------------------------------------------------------------------------------------------------
# the plan's estimate


@dataclass(frozen=True)
class Estimate:
    """One run's estimate; times and GPU-hours None where there is no basis."""

    run: Any
    target: Target
    images_per_epoch: int | None
    train_s: float | None
    wall_s: float | None
    gpu_h: float | None
    # what the speed rests on, and what the images per epoch rest on
    basis: str
    size_basis: str
    # relative uncertainty of the speed: times and hours are printed to the digits it allows
    spread: float = 0.0


def estimate_run(run: Any, speed: Speed, target: Target) -> Estimate:
    config: RunConfig = run.config
    size, size_basis = train_set_size(config)
    per_epoch = images_per_epoch(size, config, target.world_size) if size is not None else None
    if speed.img_s is None or per_epoch is None:
        basis = speed.basis if speed.img_s is None else f"epoch length unknown: {size_basis}"
        return Estimate(run, target, per_epoch, None, None, None, basis, size_basis)
    train_s = config.schedule.epochs * per_epoch / speed.img_s
    wall_s = train_s * (speed.wall_ratio or 1.0)
    return Estimate(run, target, per_epoch, train_s, wall_s, wall_s * target.gpus / 3600, speed.basis, size_basis,
                    speed.spread)


def estimate_runs(runs: Iterable[Any], records: Iterable[Any], executor: str = "auto", max_parallel: int = 1,
                  slurm: Any = None, probe: bool = False, gpu_name: str | None = None,
                  threads: int | None = None) -> list[Estimate]:
    """An estimate per planned run (`harness.spec.PlannedRun`), from the store's completed `records` or a probe."""
    records = list(records)
    targets: dict[tuple[bool, int], Target] = {}
    speeds: dict[tuple[Any, ...], Speed] = {}
    out = []
    for run in runs:
        where = (run.config.device == "cpu", run.config.devices)
        if where not in targets:
            targets[where] = target_for(executor, where[0], max_parallel, slurm, gpu_name, threads, where[1])
        target = targets[where]
        key = speed_key(run.config.as_json())
        if (key, target) not in speeds:
            speeds[(key, target)] = measured_speed(key, target, records) or (
                probed_speed(run.config, key, target) if probe else no_basis(key, target))
        out.append(estimate_run(run, speeds[(key, target)], target))
    return out


def duration(seconds: float, spread: float) -> str:
    """A wall time as precise as it is known: h:mm:ss when the speed is known to a few percent, else `~40 min`,
    `~1.5 h` (the significant digits the spread allows, in the largest unit that fits)."""
    if digits(spread) >= 3:
        return clock(seconds)
    unit, size = ("h", 3600) if seconds >= 3600 else ("min", 60) if seconds >= 60 else ("s", 1)
    return f"~{rounded(seconds / size, spread):g} {unit}"


def format_estimates(estimates: list[Estimate]) -> str:
    """Per run: epochs, images per epoch, wall time, GPU-hours and a numbered basis; the total; the bases. Times
    and hours are rounded to what the speed is known to (a probe on a busy machine: two digits, or one)."""
    if not estimates:
        return "Estimate: nothing to run."
    bases = list(dict.fromkeys(e.basis for e in estimates))
    lines = [f"Estimate on the {t.describe}:" for t in dict.fromkeys(e.target for e in estimates)]
    lines.append(f"{'run':<10}  {'epochs':>6}  {'img/epoch':>9}  {'wall':>9}  {'GPU-h':>8}  basis")
    for e in estimates:
        wall = duration(e.wall_s, e.spread) if e.wall_s is not None else "?"
        gpu_h = f"{rounded(e.gpu_h, e.spread):g}" if e.gpu_h is not None else "?"
        per_epoch = e.images_per_epoch if e.images_per_epoch is not None else "?"
        lines.append(f"{e.run.short:<10}  {e.run.config.schedule.epochs:>6}  {per_epoch:>9}  {wall:>9}  "
                     f"{gpu_h:>8}  [{bases.index(e.basis) + 1}]")
    done = [e for e in estimates if e.wall_s is not None]
    missing = len(estimates) - len(done)
    if done:
        spread = max(e.spread for e in done)
        total_gpu_h = rounded(sum(e.gpu_h for e in done if e.gpu_h is not None), spread)
        lines.append(f"{'total':<10}  {'':>6}  {'':>9}  {duration(sum(e.wall_s or 0.0 for e in done), spread):>9}  "
                     f"{total_gpu_h:>8g}  {len(done)} of {count(len(estimates), 'run')} estimated"
                     + (f"; {missing} of unknown speed not counted" if missing else "")
                     + " (run one after another; parallel runs share the wall time)")
    else:
        lines.append(f"{'total':<10}  {'':>6}  {'':>9}  {'?':>9}  {'?':>8}  no estimate: "
                     + ("the run's speed is unknown" if len(estimates) == 1 else
                        f"the speed of the {len(estimates)} runs is unknown"))
    lines += [f"[{i}] {basis}" for i, basis in enumerate(bases, 1)]
    sizes = sorted({e.size_basis for e in estimates})
    lines.append("Images per epoch, from the training-set size known without loading data: " + "; ".join(sizes))
    return "\n".join(lines)


def dry_run_estimate(entries: Iterable[Any], store: RunStore | None, executor: str, max_parallel: int = 1,
                     slurm: Any = None, probe: bool = False, threads: int | None = None) -> str:
    """What `harness run --dry-run` prints below the plan: the estimate of the runs still to run."""
    todo = [e.run for e in entries if e.state == "to_run"]
    records = completed_like(store, todo) if store is not None and todo else []
    # the launcher splits the cores between the runs that train at once, at most the runs it trains
    at_once = max(1, min(max_parallel, len(todo)))
    return format_estimates(estimate_runs(todo, records, executor, at_once, slurm, probe, threads=threads))


def completed_like(store: RunStore, runs: list[Any]) -> list[RunRecord]:
    """The store's completed runs of ours that could estimate `runs` (same models: a speed key starts with the
    model), filtered in the database, so a plan's estimate does not read every run of a large store."""
    return store.completed_runs_of(run.config.model.name for run in runs)


# ---------------------------------------------------------------------------------------------------------------
# a running run's remaining time


def remaining_s(record: RunRecord, epoch_img_s: list[float], now: datetime | None = None) -> float | None:
    """Seconds a running run still needs: its remaining epochs × its own measured epoch time.

    The epoch time is images per epoch / the run's mean training images/s over its last three logged epochs
    (training only, and robust to a resume); where the training-set size is unknown here, it is the time since
    the run (re)started over the epochs it logged (which counts evaluation, but also epochs done before a resume).
    """
    epochs = ((record.config or {}).get("schedule") or {}).get("epochs")
    if record.status != RunState.RUNNING or record.epoch is None or not epochs:
        return None
    left = max(0, epochs - (record.epoch + 1))
    config = RunConfig.model_validate(record.config)
    size, _ = train_set_size(config)
    speeds = [v for v in epoch_img_s if v and not math.isnan(v)][-3:]
    if size is not None and speeds:
        return left * images_per_epoch(size, config) / statistics.fmean(speeds)
    if record.started_at is None:
        return None
    return left * ((now or datetime.now(timezone.utc)) - record.started_at).total_seconds() / (record.epoch + 1)

