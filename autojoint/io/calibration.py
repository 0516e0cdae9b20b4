"""``calibration.json``: the temperature that calibrates a model's diagnosis probabilities.

It lives beside the folds it was fitted on (``io.workdir.variant_dir``: ``WORK/fold_X`` ->
``WORK/calibration.json``, ``WORK/variants/NAME/CONF/calibration.json``), so a model folder
that is copied or shipped keeps it; ``autojoint_predict`` applies it when present.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from autojoint.io.records import read_versioned, write_record

CALIBRATION_FILE = "calibration.json"
CALIBRATION_SCHEMA_VERSION = 1
_FIX = "delete it and run autojoint_calibrate (or autojoint_find_best_configuration) again"


@dataclass(frozen=True)
class Calibration:
    """Temperature scaling fitted on cross-validation predictions (docs/model_selection.md).

    Attributes:
        temperature: T in ``softmax(log p / T)``; above 1 softens over-confident
            probabilities, below 1 sharpens under-confident ones.
        classes: the diagnosis classes, in the plan's order.
        folds: the folds whose validation predictions were pooled.
        num_cases: how many cases the fit saw.
        nll_before, nll_after: mean negative log-likelihood at T = 1 and at T.
        ece_before, ece_after: expected calibration error (10 bins) at T = 1 and at T.
        created: when it was fitted (ISO 8601, UTC).
    """

    temperature: float
    classes: tuple[str, ...]
    folds: tuple[str, ...]
    num_cases: int
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float
    created: str
    schema_version: int = CALIBRATION_SCHEMA_VERSION


def calibration_path(model_dir: Path) -> Path:
    """``MODEL_DIR/calibration.json`` (``MODEL_DIR``: the folder holding ``fold_X``)."""
    return Path(model_dir) / CALIBRATION_FILE


def read_calibration(model_dir: Path) -> Calibration | None:
    """The calibration stored with the folds in ``model_dir``, None when there is none.

    Raises:
        ValueError: the file exists but is malformed or of another schema version, or its
            temperature is not > 0.
    """
    path = calibration_path(model_dir)
    if not path.is_file():
        return None
    record = read_versioned(path, Calibration, CALIBRATION_SCHEMA_VERSION, _FIX)
    if not record.temperature > 0:
        raise ValueError(f"{path}: temperature must be > 0, got {record.temperature}; {_FIX}.")
    return record


def write_calibration(model_dir: Path, record: Calibration) -> Path:
    """Write ``MODEL_DIR/calibration.json`` atomically; returns its path."""
    return write_record(record, calibration_path(model_dir))
