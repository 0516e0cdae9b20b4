#!/usr/bin/env bash
# Create (or reuse) the project venv and install autojoint (editable) with the extras named
# as arguments, and nothing more: `bash scripts/setup_env.sh` for running the pipeline
# (scripts/demo.sh), `bash scripts/setup_env.sh test dicom export` for the test tools, the
# DICOM-SEG writer and the ONNX tools the tests cover (scripts/test.sh), `dicom` alone for
# DICOM-SEG output, `export` alone for ONNX export.
#
# torch comes first, and every later install is constrained to it: acvl-utils (and the test
# extra's monai) ask for a bare `torch`, which pip would otherwise satisfy with its default
# build, a multi-GB CUDA one on Linux, even on a machine without a GPU. Which torch:
#   1. a torch already in the venv is kept (to choose a build yourself, install it first);
#   2. else torch==AUTOJOINT_TORCH_VERSION (default: the version autojoint is tested with)
#      from AUTOJOINT_TORCH_INDEX_URL when that is set (empty: pip's own configuration);
#   3. else a wheel of that version pip already finds on disk (its find-links), as it is;
#   4. else the CUDA build from pip's default index when `nvidia-smi` sees a GPU, and the
#      CPU build from PyTorch's CPU index otherwise.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${AUTOJOINT_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
TORCH_VERSION="${AUTOJOINT_TORCH_VERSION:-2.13.0}"
CPU_INDEX="https://download.pytorch.org/whl/cpu"

EXTRAS="$(IFS=,; echo "$*")"
TARGET="$ROOT"
if [ -n "$EXTRAS" ]; then
  TARGET="${ROOT}[${EXTRAS}]"
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating venv $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

if "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  KEPT="$("$VENV/bin/python" -c 'import torch; print(torch.__version__)')"
  echo "[setup] keeping torch $KEPT, already in $VENV"
  if [ -n "${AUTOJOINT_TORCH_VERSION:-}" ] && [ "${KEPT%%+*}" != "$AUTOJOINT_TORCH_VERSION" ]; then
    echo "[setup] (AUTOJOINT_TORCH_VERSION=$AUTOJOINT_TORCH_VERSION applies to a venv without torch: uninstall torch from $VENV to change it)"
  fi
else
  INDEX=()
  if [ -n "${AUTOJOINT_TORCH_INDEX_URL+set}" ]; then
    if [ -n "$AUTOJOINT_TORCH_INDEX_URL" ]; then
      INDEX=(--index-url "$AUTOJOINT_TORCH_INDEX_URL")
      FROM="$AUTOJOINT_TORCH_INDEX_URL (AUTOJOINT_TORCH_INDEX_URL)"
    else
      FROM="pip's own configuration (AUTOJOINT_TORCH_INDEX_URL is empty)"
    fi
  elif "${PIP[@]}" install --dry-run --no-index --no-deps "torch==$TORCH_VERSION" >/dev/null 2>&1; then
    FROM="a wheel already on disk (pip's find-links)"
  elif nvidia-smi >/dev/null 2>&1; then
    FROM="pip's default index, as nvidia-smi sees a GPU (its Linux x86_64 torch is a CUDA build; for another CUDA version set AUTOJOINT_TORCH_INDEX_URL, e.g. https://download.pytorch.org/whl/cu126)"
  else
    INDEX=(--index-url "$CPU_INDEX")
    FROM="$CPU_INDEX: the CPU build, as nvidia-smi sees no GPU"
  fi
  echo "[setup] installing torch==$TORCH_VERSION from $FROM"
  "${PIP[@]}" install ${INDEX[@]+"${INDEX[@]}"} "torch==$TORCH_VERSION" \
    2> >(grep -v "is ignored: it is neither" >&2)
fi

INSTALLED_TORCH="$("$VENV/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])')"
CONSTRAINTS="$VENV/autojoint-constraints.txt"
echo "torch==$INSTALLED_TORCH" > "$CONSTRAINTS"
echo "[setup] installing autojoint (editable${EXTRAS:+, extras: $EXTRAS}) with torch pinned to $INSTALLED_TORCH"
"${PIP[@]}" install -c "$CONSTRAINTS" -e "$TARGET" 2> >(grep -v "is ignored: it is neither" >&2)
"$VENV/bin/python" -c "import torch, autojoint; print(f'[setup] autojoint {autojoint.__version__}, torch {torch.__version__}, cuda {torch.cuda.is_available()}')"
