#!/usr/bin/env bash
# README command 2: set up the environment, then run the test suite (what CI runs).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# with the test tools (pytest, ruff, mypy, references) and the dicom and export (ONNX)
# extras their tests need
bash "$ROOT/scripts/setup_env.sh" test dicom export
VENV="${AUTOJOINT_VENV:-$ROOT/.venv}"
cd "$ROOT"
echo "[test] ruff (lint and format) and mypy"
"$VENV/bin/ruff" check autojoint dataset_conversion tests benchmarks
"$VENV/bin/ruff" format --check autojoint dataset_conversion tests benchmarks
"$VENV/bin/mypy"
echo "[test] pytest"
"$VENV/bin/python" -m pytest "$@"
