#!/usr/bin/env bash
# Create (or reuse) the project venv and install autojoint with its test tools.
# torch is installed FIRST: acvl-utils and batchgeneratorsv2 ask for a bare `torch`, which in
# a venv without one pulls a multi-GB CUDA build. Everything after is constrained to the
# torch already present.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${AUTOJOINT_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
TORCH_VERSION="${AUTOJOINT_TORCH_VERSION:-2.13.0}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating venv $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  echo "[setup] installing torch==$TORCH_VERSION (on this machine: the CPU wheel on disk)"
  "${PIP[@]}" install "torch==$TORCH_VERSION" numpy 2> >(grep -v "is ignored: it is neither" >&2)
fi
INSTALLED_TORCH="$("$VENV/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])')"
CONSTRAINTS="$VENV/autojoint-constraints.txt"
echo "torch==$INSTALLED_TORCH" > "$CONSTRAINTS"
echo "[setup] installing autojoint (editable) with torch pinned to $INSTALLED_TORCH"
"${PIP[@]}" install -c "$CONSTRAINTS" -e "$ROOT[test]" 2> >(grep -v "is ignored: it is neither" >&2)
"$VENV/bin/python" -c "import torch, autojoint; print(f'[setup] autojoint {autojoint.__version__}, torch {torch.__version__}, cuda {torch.cuda.is_available()}')"
