#!/usr/bin/env bash
# README command 1: set up, then run the whole pipeline on the embedded synthetic demo:
# generate -> plan + preprocess -> train briefly -> predict held-out cases -> evaluate ->
# share: export the model as a zip, install it elsewhere, predict one case from the copy.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup_env.sh"   # autojoint and torch only: the demo needs no test tools
VENV="${AUTOJOINT_VENV:-$ROOT/.venv}"
BIN="$VENV/bin"
DEMO="${AUTOJOINT_DEMO_DIR:-$ROOT/demo_run}"
NUM_TRAIN="${DEMO_NUM_TRAIN:-45}"
NUM_TEST="${DEMO_NUM_TEST:-15}"
EPOCHS="${DEMO_EPOCHS:-16}"
ITERATIONS="${DEMO_ITERATIONS:-25}"

start=$(date +%s)
rm -rf "$DEMO"   # only the demo's own output folder
echo "[demo] 1/6 generating $NUM_TRAIN training + $NUM_TEST held-out synthetic chest CTs in $DEMO/raw"
"$BIN/autojoint_generate_demo" -o "$DEMO/raw" --num-train "$NUM_TRAIN" --num-test "$NUM_TEST" \
  --seed 0 --fov-mm 100 --z-extent-mm 100
echo "[demo] 2/6 fingerprint, plan, preprocess"
"$BIN/autojoint_plan" -d "$DEMO/raw" -w "$DEMO/work" -j 2
echo "[demo] 3/6 training on all training cases ($EPOCHS epochs x $ITERATIONS iterations)"
# At a tiny budget Adam beats the library's default SGD, and light augmentation (mirroring
# only) beats nnU-Net's full preset (measured on this demo at 200 steps, docs/training.md).
# 16 x 25 steps on 45 cases fit the 15-minute limit on 2 cores with the prediction's
# mirroring (about 13 s per held-out case).
"$BIN/autojoint_train" all -w "$DEMO/work" --epochs "$EPOCHS" --iterations-per-epoch "$ITERATIONS" \
  --optimizer adam --augmentation light
echo "[demo] 4/6 predicting the held-out cases"
"$BIN/autojoint_predict" -i "$DEMO/raw/imagesTs" -o "$DEMO/pred" -w "$DEMO/work"
echo "[demo] 5/6 evaluating"
"$BIN/autojoint_evaluate" -p "$DEMO/pred" -r "$DEMO/raw/labelsTs" \
  --diagnoses "$DEMO/raw/diagnosesTs.csv" --dataset-json "$DEMO/raw/dataset.json" \
  -o "$DEMO/summary.json"
"$BIN/python" - "$DEMO/summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print("\n=== autojoint demo results (held-out synthetic cases) ===")
for name, m in s["mean"].items():
    d = m["dice"]
    print(f"  Dice {name:<14} {'n/a' if d is None else f'{d:.3f}'}  (defined on {m['num_cases_defined']} cases)")
c, d = s["classification"], s["diagnosis"]
print(f"  diagnosis accuracy  {c['accuracy']:.3f}  ({c['num_cases']} cases; classes {c['classes']})")
print(f"  diagnosis macro-AUC {d['macro_auc']:.3f}")
print(f"  confusion matrix (rows = reference): {c['confusion_matrix']}")
PY
echo "[demo] 6/6 sharing the model: export, install into a new work dir, predict one case"
# The zip is what you would send a colleague (docs/model_sharing.md); the installed copy
# predicts with the same flags as step 4, so its mask must equal step 4's byte for byte.
"$BIN/autojoint_export_model" -w "$DEMO/work" -o "$DEMO/model.zip"
"$BIN/autojoint_install_model" "$DEMO/model.zip" -w "$DEMO/installed"
FIRST="$(cd "$DEMO/raw/imagesTs" && ls | head -n 1)"
mkdir -p "$DEMO/one_case"
cp "$DEMO/raw/imagesTs/$FIRST" "$DEMO/one_case/"
"$BIN/autojoint_predict" -i "$DEMO/one_case" -o "$DEMO/pred_installed" -w "$DEMO/installed"
CASE="${FIRST%_0000.nii.gz}"
if cmp -s "$DEMO/pred/$CASE.nii.gz" "$DEMO/pred_installed/$CASE.nii.gz"; then
  echo "[demo] the installed model's mask of $CASE equals the original's (byte for byte)"
else
  echo "[demo] error: the installed model's mask of $CASE differs from the original's" >&2
  exit 1
fi
echo "[demo] finished in $(( $(date +%s) - start )) s; outputs in $DEMO"
