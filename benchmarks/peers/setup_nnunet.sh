#!/usr/bin/env bash
# Install nnU-Net v2 (the peer) into its own venv OUTSIDE the repository, torch pinned to the
# version autojoint's venv runs, so that both tools are timed on the same torch build.
# An unpinned `pip install nnunetv2` pulls a multi-GB CUDA torch: torch goes in first, and
# every later install is constrained to it.
#
#   bash benchmarks/peers/setup_nnunet.sh            # venv at $NNUNET_VENV (default below)
#
# Prints the venv's python on its last line.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${NNUNET_VENV:-${AUTOJOINT_PEERS_HOME:-$HOME/.cache/autojoint_peers}/nnunet-venv}"
NNUNET_VERSION="${NNUNET_VERSION:-2.8.1}"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
AUTOJOINT_PY="${AUTOJOINT_PYTHON:-$ROOT/.venv/bin/python}"
if [ -x "$AUTOJOINT_PY" ]; then
  TORCH_VERSION="$("$AUTOJOINT_PY" -c 'import torch; print(torch.__version__.split("+")[0])')"
else
  TORCH_VERSION="${AUTOJOINT_TORCH_VERSION:-2.13.0}"
fi
case "$VENV" in
  "$ROOT"/*) echo "[peers] refusing NNUNET_VENV inside the repository ($VENV): choose a path outside $ROOT" >&2; exit 2;;
esac
if [ ! -x "$VENV/bin/python" ]; then
  echo "[peers] creating venv $VENV with $PYTHON" >&2
  mkdir -p "$(dirname "$VENV")"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  echo "[peers] installing torch==$TORCH_VERSION first" >&2
  "${PIP[@]}" install "torch==$TORCH_VERSION" >&2
fi
INSTALLED="$("$VENV/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])')"
if [ "$INSTALLED" != "$TORCH_VERSION" ]; then
  echo "[peers] $VENV has torch $INSTALLED, autojoint runs $TORCH_VERSION: remove $VENV and rerun" >&2
  exit 2
fi
CONSTRAINTS="$VENV/peer-constraints.txt"
echo "torch==$TORCH_VERSION" > "$CONSTRAINTS"
if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('nnunetv2') != '$NNUNET_VERSION')" 2>/dev/null; then
  echo "[peers] installing nnunetv2==$NNUNET_VERSION with torch pinned to $TORCH_VERSION" >&2
  "${PIP[@]}" install -c "$CONSTRAINTS" "nnunetv2==$NNUNET_VERSION" >&2
fi
"$VENV/bin/python" -c "import torch, nnunetv2, importlib.metadata as m; import sys; print(f'[peers] nnunetv2 {m.version(\"nnunetv2\")}, torch {torch.__version__}', file=sys.stderr)"
echo "$VENV/bin/python"
