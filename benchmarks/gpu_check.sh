#!/usr/bin/env bash
# GPU readiness check (issue 20). On a machine with a CUDA GPU, from the repository root:
#
#   bash benchmarks/gpu_check.sh
#
# Sets up (or reuses) the venv, generates the synthetic demo dataset at chest-CT size, plans
# for the detected GPU, trains a few hundred iterations, and prints the measured peak memory
# (torch.cuda.max_memory_allocated) against the plan's estimate, iterations/s, and the time
# to predict one 512 x 512 x 300 CT with and without mirroring. The numbers also go to
# $OUT/work/gpu_check.json: please attach that file to issue 20.
#
# Settings (environment): AUTOJOINT_VENV (default .venv), GPU_CHECK_DIR (default
# gpu_check_run, removed and rewritten except its raw/ dataset, which is reused),
# GPU_CHECK_NUM_TRAIN (20 cases), GPU_CHECK_EPOCHS (3), GPU_CHECK_ITERATIONS (100 per
# epoch), GPU_CHECK_WORKERS (loader processes, default: cores - 1, at most 8),
# GPU_CHECK_CT (the CT to resample; default ../shared/data/covid_ct_md/nifti_ds2/P001.nii.gz
# when present, else a demo case).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export AUTOJOINT_VENV="${AUTOJOINT_VENV:-$ROOT/.venv}"
VENV="$AUTOJOINT_VENV"
PY="$VENV/bin/python"
OUT="${GPU_CHECK_DIR:-$ROOT/gpu_check_run}"
NUM_TRAIN="${GPU_CHECK_NUM_TRAIN:-20}"
EPOCHS="${GPU_CHECK_EPOCHS:-3}"
ITERATIONS="${GPU_CHECK_ITERATIONS:-100}"
CORES="$(nproc 2>/dev/null || echo 2)"
DEFAULT_WORKERS=$(( CORES > 9 ? 8 : (CORES > 1 ? CORES - 1 : 1) ))
WORKERS="${GPU_CHECK_WORKERS:-$DEFAULT_WORKERS}"
REAL_CT="$ROOT/../shared/data/covid_ct_md/nifti_ds2/P001.nii.gz"

refuse() {
  echo "gpu_check: $1" >&2
  echo "gpu_check: refusing to run." >&2
  exit 1
}

# Refuse before any install or data: with torch already in the venv ask it, else ask for
# the driver (installing a CUDA build of torch on a machine without a GPU takes GBs).
NEEDS="This check needs an NVIDIA GPU, its driver and a CUDA build of torch; on a CPU machine run scripts/demo.sh."
if [ -x "$PY" ] && "$PY" -c "import torch" 2>/dev/null; then
  if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    BUILD="$("$PY" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)')"
    refuse "no CUDA device: torch $BUILD in $VENV sees no GPU. $NEEDS"
  fi
elif ! command -v nvidia-smi >/dev/null 2>&1; then
  refuse "no CUDA device: nvidia-smi not found (no NVIDIA driver). $NEEDS"
fi

cd "$ROOT"
bash "$ROOT/scripts/setup_env.sh"
# The authoritative check, with the torch the venv now has.
"$PY" -m benchmarks.gpu_check require-cuda || refuse "see above."
BIN="$VENV/bin"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true

start=$(date +%s)
mkdir -p "$OUT"
rm -rf "$OUT/work" "$OUT/ct" "$OUT/pred"   # only this check's own outputs
if [ -f "$OUT/raw/dataset.json" ]; then
  echo "[gpu_check] 1/5 reusing the demo dataset in $OUT/raw"
else
  echo "[gpu_check] 1/5 generating $NUM_TRAIN synthetic chest CTs (340 mm field of view) in $OUT/raw"
  "$BIN/autojoint_generate_demo" -o "$OUT/raw" --num-train "$NUM_TRAIN" --num-test 1 --seed 0
fi
echo "[gpu_check] 2/5 fingerprint, plan for the detected GPU, preprocess"
"$BIN/autojoint_plan" -d "$OUT/raw" -w "$OUT/work" -j "$WORKERS"
"$BIN/autojoint_plan" -w "$OUT/work" --explain
RESULTS="$OUT/work/gpu_check.json"
echo "[gpu_check] 3/5 training fold all: $EPOCHS epochs x $ITERATIONS iterations, $WORKERS loader workers"
"$PY" -m benchmarks.gpu_check train "$OUT/work" --epochs "$EPOCHS" --iterations "$ITERATIONS" \
  --num-workers "$WORKERS" --results "$RESULTS"
echo "[gpu_check] 4/5 a 512 x 512 x 300 CT to predict"
CT_SOURCE="${GPU_CHECK_CT:-}"
if [ -z "$CT_SOURCE" ]; then
  if [ -f "$REAL_CT" ]; then
    CT_SOURCE="$REAL_CT"
  else
    shopt -s nullglob
    HELD_OUT=("$OUT"/raw/imagesTs/*_0000.nii.gz "$OUT"/raw/imagesTr/*_0000.nii.gz)
    shopt -u nullglob
    CT_SOURCE="${HELD_OUT[0]}"
  fi
fi
"$PY" -m benchmarks.gpu_check make-ct "$CT_SOURCE" "$OUT/ct/ct512_0000.nii.gz" --results "$RESULTS"
echo "[gpu_check] 5/5 predicting it without and with mirroring"
"$PY" -m benchmarks.gpu_check predict "$OUT/work" "$OUT/ct" "$OUT/pred" --results "$RESULTS"
echo
"$PY" -m benchmarks.gpu_check report "$RESULTS"
echo "[gpu_check] finished in $(( $(date +%s) - start )) s; numbers in $RESULTS"
