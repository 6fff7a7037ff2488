#!/usr/bin/env bash
# The GPU day in one command, for a borrowed machine (one CUDA GPU, a stock PyTorch image with Python 3.12,
# no network). Run benchmarks/gpu/prepare.sh here first and carry benchmarks/gpu/wheels with the tree.
#
#   benchmarks/gpu/run.sh              # on the GPU machine: under 12 minutes
#   benchmarks/gpu/run.sh --rehearse   # the same steps on this CPU with tiny sizes: 4 minutes when quiet
#
# It installs the wheels (when the image lacks the harness's dependencies) without network into a temporary
# --target folder and uses the machine's own torch. Then, each step under its own time budget (`timeout`), each
# writing its results as it goes, so that a step cut short still leaves what it measured:
#   1. `harness run` of the `gpu` profile of ablations/distillation.yaml through the local executor (DeiT-Ti
#      students without, with hard and with token distillation, and a ResNet-18 teacher, on generated 224-px
#      images, precision auto), then `harness report --table 3 --profile gpu` and `harness status`;
#   2. inference throughput, `paper` (fp32 without TF32, the largest batch found by search) and `fast`
#      protocols, DeiT-Ti/S/B at 224 and DeiT-B at 384;
#   3. training images/s of DeiT-S at batch 256 in bf16: the harness trainer against a bare loop, with and
#      without compile (+ fused AdamW), and the reference trainer's settings (fp16 autocast + GradScaler, no
#      compile, unfused AdamW);
#   4. DeiT-B at the recipe's batch of 1024 with `accumulation_steps: auto`, `precision: auto` against fp32: the
#      per-device batch, micro-batch and accumulation chosen, peak memory and images/s (benchmarks/gpu/precision.py).
# Results: one markdown file, RESULTS.md (the card, torch and CUDA versions first), with run.log (every step's
# output) and store.db (the harness's store), in $OUT when set, else in a new folder it prints.
# Environment: PYTHON (default python3).
set -uo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
MODE=gpu
case "${1:-}" in
  "") ;;
  --rehearse) MODE=rehearse ;;
  *) echo "usage: $0 [--rehearse]" >&2; exit 2 ;;
esac
PY=${PYTHON:-python3}
START=$SECONDS
DEST=${OUT:-}
if [[ -z "$DEST" ]]; then DEST=$(mktemp -d "${TMPDIR:-/tmp}/gpu-day.XXXXXX"); fi
mkdir -p "$DEST"
RESULTS=$DEST/RESULTS.md
LOG=$DEST/run.log
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-work.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
: >"$RESULTS"
: >"$LOG"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONPATH="$REPO"

# budgets in seconds (sum under 12 minutes on the GPU, 12 on the CPU), and each step's sizes
if [[ $MODE == gpu ]]; then
  B_TRAIN=230; B_REPORT=25; B_INFER=180; B_SPEED=120; B_PREC=150
  DEVICE=cuda
  # the paper protocol's uncapped batch search finds batches of thousands: fewer timed batches each
  INFER_ARGS=(--repeats 10)
  PREC_ARGS=()
  SPEED_ARGS=(--model deit_small_patch16_224 --img-size 224 --dataset synthetic --batch 256 --epochs 2 --rounds 1)
else
  # twice what a quiet 2-core machine needs (step 3: 87 s): the test suite rehearses beside its other worker
  B_TRAIN=220; B_REPORT=60; B_INFER=60; B_SPEED=220; B_PREC=120
  DEVICE=cpu
  # on a CPU `auto` accumulation means 1: two steps named instead
  PREC_ARGS=(--model deit_tiny_patch4_32 --img-size 16 --batch 32 --train-subset 64 --accumulation 2 --epochs 1)
  INFER_ARGS=(--models deit_tiny_patch4_32@16,deit_tiny_patch4_32@32 --batch 8 --repeats 2)
  SPEED_ARGS=(--model deit_tiny_patch4_32 --img-size 16 --dataset synthetic --train-subset 64 --batch 32 --epochs 1
              --rounds 1 --repeats 2)
  # one torch thread per process: the CI machine is small and shared
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
fi

note() { echo "$*" | tee -a "$LOG"; }

# the harness's dependencies: the image's own where it has them, else the carried wheels
if ! "$PY" -c "import sqlalchemy, alembic, mako, submitit, pydantic, psycopg" 2>/dev/null; then
  WHEELS=$REPO/benchmarks/gpu/wheels
  if ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    echo "the harness's dependencies are missing and $WHEELS holds no wheels: run benchmarks/gpu/prepare.sh first" >&2
    exit 2
  fi
  # typing_extensions only where the image's copy is older than the carried one (pydantic needs a recent one)
  mapfile -t PICK < <("$PY" - "$WHEELS" <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from packaging.version import Version
for wheel in sorted(Path(sys.argv[1]).glob("*.whl")):
    name, carried = wheel.name.split("-")[:2]
    if name == "typing_extensions":
        try:
            if Version(version("typing_extensions")) >= Version(carried):
                continue
        except PackageNotFoundError:
            pass
    print(wheel)
PY
  )
  "$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile --no-cache-dir \
    --target "$WORK/site" "${PICK[@]}" >>"$LOG" 2>&1 || { echo "installing the wheels failed: see $LOG" >&2; exit 2; }
  export PYTHONPATH="$WORK/site:$REPO"
  note "installed ${#PICK[@]} wheels into $WORK/site"
fi

"$PY" - "$MODE" >>"$RESULTS" 2>>"$LOG" <<'PY'
import datetime, platform, sys
import torch
mode = sys.argv[1]
print(f"# GPU day{' (rehearsal on a CPU)' if mode == 'rehearse' else ''}: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC\n")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"- device: {p.name}, {p.total_memory / 2**30:.0f} GiB, {torch.cuda.device_count()} GPU(s)")
else:
    print("- device: CPU only")
print(f"- torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
      f"Python {platform.python_version()}")
print()
PY

# step NAME BUDGET_S COMMAND...: run under its budget, its output to the log, its outcome to the results
step() {
  local name=$1 budget=$2 t0=$SECONDS rc status
  shift 2
  note "=== $name (budget ${budget} s)"
  timeout --kill-after=15 "$budget" "$@" >>"$LOG" 2>&1
  rc=$?
  case $rc in
    0) status="done" ;;
    124|137) status="TIMED OUT" ;;
    *) status="FAILED (exit $rc)" ;;
  esac
  printf '\n_%s: %s in %d s (budget %d s)_\n\n' "$name" "$status" $((SECONDS - t0)) "$budget" >>"$RESULTS"
  note "=== $name: $status in $((SECONDS - t0)) s"
}

SPEC=$REPO/ablations/distillation.yaml
if [[ $MODE == rehearse ]]; then
  # the gpu profile at tiny sizes on the CPU; same spec name, profile and runs otherwise
  SPEC=$WORK/distillation.yaml
  "$PY" - "$REPO/ablations/distillation.yaml" "$SPEC" <<'PY' || exit 2
import sys
import yaml
spec = yaml.safe_load(open(sys.argv[1]))
gpu = spec["profiles"]["gpu"]
gpu["axes"] = {"model.name": ["deit_tiny_patch4_32"]}
gpu["set"].update({"device": "cpu", "data.img_size": 16, "data.train_subset": 64, "batch_size": 32,
                   "eval_batch_size": 64, "schedule.epochs": 2, "throughput.batch_size": 16,
                   "throughput.repeats": 2, "distillation.teacher.model": "resnet_tiny_32",
                   # compiling costs a CPU tens of seconds a run; step 3 and the tests rehearse compile
                   "compile": False})
gpu["variants"]["teacher"]["set"]["model.name"] = "resnet_tiny_32"
yaml.Dumper.ignore_aliases = lambda *a: True
open(sys.argv[2], "w").write(yaml.dump(spec, sort_keys=False, allow_unicode=True))
PY
fi
export PY RESULTS SPEC DB_URL="sqlite:///$DEST/store.db" RUNS_DIR="$WORK/runs"
train_runs() { "$PY" -m harness run "$SPEC" --profile gpu --executor local --db "$DB_URL" --output "$RUNS_DIR"; }
report_runs() {
  "$PY" -m harness report --table 3 --profile gpu --db "$DB_URL" --output "$RUNS_DIR" >>"$RESULTS" || return
  { echo; echo '```'; "$PY" -m harness status distillation --db "$DB_URL" --output "$RUNS_DIR"; echo '```'; } >>"$RESULTS"
}
export -f train_runs report_runs

echo "## 1. harness run --profile gpu, local executor" >>"$RESULTS"
step "harness run" "$B_TRAIN" bash -c train_runs
step "harness report" "$B_REPORT" bash -c report_runs

echo "## 2. inference throughput" >>"$RESULTS"
step "inference" "$B_INFER" "$PY" benchmarks/gpu/inference.py --device "$DEVICE" --markdown "$RESULTS" "${INFER_ARGS[@]}"

echo "## 3. training speed, bf16" >>"$RESULTS"
step "training speed" "$B_SPEED" "$PY" benchmarks/trainer_speed.py --device "$DEVICE" --precision bf16 \
  --arms bare,harness,bare+compile+fused,harness+compile+fused,reference --skip-throughput --markdown "$RESULTS" "${SPEED_ARGS[@]}"

echo "## 4. mixed precision and gradient accumulation" >>"$RESULTS"
step "precision and accumulation" "$B_PREC" "$PY" benchmarks/gpu/precision.py --device "$DEVICE" \
  --markdown "$RESULTS" "${PREC_ARGS[@]}"

note "total $((SECONDS - START)) s; results in $DEST: $(cd "$DEST" && ls | tr '\n' ' ')"
echo "$RESULTS"
