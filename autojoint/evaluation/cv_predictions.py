"""The cross-validation predictions of one trained model: what each fold's final
validation left in ``fold_X/validation/`` (written by ``training.validation``), read back
for calibration and model selection.

Per fold: ``summary.json`` (per case: Dice per label, reference diagnosis, diagnosis
probabilities) and, when training ran with ``--save-validation-probabilities``,
``CASE_probabilities.npz`` per case: the segmentation softmax on the *preprocessed* grid
(the plan's target spacing, body crop and axis order), where the reference masks already
are, so no raw data is needed to score it. Every model of one configuration shares that
grid (variants share the configuration's preprocessed data), so their probabilities can be
averaged voxel by voxel.
"""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autojoint.io.files import atomic_write, read_json

VALIDATION_DIR = "validation"
SUMMARY_FILE = "summary.json"
PROBABILITIES_SUFFIX = "_probabilities.npz"
ALL_FOLDS = ("0", "1", "2", "3", "4")


def validation_probabilities_path(fold_dir: Path, case_id: str) -> Path:
    """``fold_X/validation/CASE_probabilities.npz``."""
    return Path(fold_dir) / VALIDATION_DIR / f"{case_id}{PROBABILITIES_SUFFIX}"


def write_validation_probabilities(
    path: Path,
    segmentation: np.ndarray,
    label_names: Sequence[str],
    spacing: Sequence[float],
    diagnosis: np.ndarray | None,
    classes: Sequence[str],
) -> None:
    """One validation case's probabilities, zip-compressed, atomically.

    Keys: ``probabilities`` float16 ``(K, Z, Y, X)`` (preprocessed grid, index = label
    value), ``labels``, ``spacing`` (target spacing, plan axis order), and with classes
    ``diagnosis_probabilities`` float32 ``(num_classes,)`` and ``classes``. float16 halves
    the file at a rounding (< 5e-4) far below any decision threshold.
    """
    arrays: dict[str, np.ndarray] = {
        "probabilities": segmentation.astype(np.float16),
        "labels": np.array(list(label_names)),
        "spacing": np.array([float(s) for s in spacing]),
    }
    if diagnosis is not None:
        arrays["diagnosis_probabilities"] = np.asarray(diagnosis, np.float32)
        arrays["classes"] = np.array(list(classes))
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
    atomic_write(path, lambda fh: fh.write(buf.getvalue()), binary=True)


def read_segmentation_probabilities(path: Path) -> np.ndarray:
    """``probabilities`` of a :func:`write_validation_probabilities` file as float32.

    Raises:
        FileNotFoundError: no file.
        ValueError: not such a file (names it and the fix).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: not found; train the fold with --save-validation-probabilities "
            "(or rerun its validation) to write it."
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            return np.asarray(npz["probabilities"], dtype=np.float32)
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as err:
        raise ValueError(
            f"{path}: not a validation probabilities file ({err}); delete it and rerun the "
            "fold's validation."
        ) from err


@dataclass(frozen=True)
class CvCase:
    """One validation case of one fold.

    Attributes:
        dice: per label name (and ``lesion``) as in ``summary.json``; NaN = both masks
            empty.
        probabilities: diagnosis probabilities in ``CvPredictions.classes`` order, None
            without a diagnosis.
        probabilities_file: the segmentation softmax file, None when not saved.
        lesion_ref_voxels: the reference mask's lesion voxels (``n_ref`` of ``lesion``),
            None when the summary lacks it.
    """

    case: str
    fold: str
    dice: Mapping[str, float]
    diagnosis_ref: str | None
    probabilities: tuple[float, ...] | None
    probabilities_file: Path | None
    lesion_ref_voxels: int | None = None


@dataclass(frozen=True)
class CvPredictions:
    """Every fold's validation cases of one model (a variant in one configuration)."""

    model_dir: Path
    folds: tuple[str, ...]
    labels: Mapping[str, int]
    classes: tuple[str, ...]
    cases: tuple[CvCase, ...]

    @property
    def has_segmentation_files(self) -> bool:
        """Whether every case's segmentation probabilities were saved."""
        return bool(self.cases) and all(c.probabilities_file is not None for c in self.cases)

    def diagnosed(self) -> tuple[list[CvCase], np.ndarray, np.ndarray]:
        """The cases with a reference diagnosis and probabilities: the cases, their
        probabilities ``(N, C)`` and reference class indices ``(N,)``."""
        cases = [c for c in self.cases if c.diagnosis_ref in self.classes and c.probabilities]
        probs = np.array([c.probabilities for c in cases], dtype=np.float64).reshape(
            len(cases), len(self.classes)
        )
        labels = np.array([self.classes.index(str(c.diagnosis_ref)) for c in cases], np.int64)
        return cases, probs, labels


def missing_folds(model_dir: Path, folds: Sequence[str]) -> list[str]:
    """Folds among ``folds`` without ``fold_X/validation/summary.json``."""
    return [
        f
        for f in folds
        if not (Path(model_dir) / f"fold_{f}" / VALIDATION_DIR / SUMMARY_FILE).is_file()
    ]


def _float(value: object) -> float:
    return float(value) if isinstance(value, int | float) else math.nan


def load_cv_predictions(model_dir: Path, folds: Sequence[str] = ALL_FOLDS) -> CvPredictions:
    """Read the validation of every fold in ``folds`` of the model in ``model_dir``.

    Raises:
        FileNotFoundError: a fold has no ``validation/summary.json`` (all listed, with the
            command that writes them).
        ValueError: a summary is malformed, or the folds disagree on labels or classes.
    """
    model_dir = Path(model_dir)
    absent = missing_folds(model_dir, folds)
    if absent:
        raise FileNotFoundError(
            f"{model_dir}: no final validation (fold_X/validation/summary.json) for fold(s) "
            f"{', '.join(absent)}; train them (autojoint_train ... FOLD, without "
            "--skip-validation), or restrict the folds with --folds."
        )
    labels: dict[str, int] | None = None
    classes: tuple[str, ...] | None = None
    cases: list[CvCase] = []
    for fold in folds:
        fold_dir = model_dir / f"fold_{fold}"
        path = fold_dir / VALIDATION_DIR / SUMMARY_FILE
        summary = read_json(path)
        entries = summary.get("metric_per_case") if isinstance(summary, dict) else None
        if not isinstance(entries, list) or not isinstance(summary.get("labels"), dict):
            raise ValueError(
                f"{path}: not a validation summary (no 'metric_per_case'/'labels'); rerun "
                "the fold's training or delete the file."
            )
        dx = summary.get("diagnosis") or {}
        fold_classes = tuple(dx.get("classes") or ())
        fold_labels = {str(k): int(v) for k, v in summary["labels"].items()}
        if labels is not None and (fold_labels != labels or fold_classes != classes):
            raise ValueError(
                f"{path}: labels or classes differ from fold {folds[0]}'s; the folds were "
                "trained with different plans. Retrain them with one plan."
            )
        labels, classes = fold_labels, fold_classes
        for e in entries:
            case = str(e["case"])
            probs = e.get("probabilities")
            npz = validation_probabilities_path(fold_dir, case)
            n_ref = ((e.get("metrics") or {}).get("lesion") or {}).get("n_ref")
            cases.append(
                CvCase(
                    case=case,
                    fold=fold,
                    dice={k: _float(m.get("dice")) for k, m in (e.get("metrics") or {}).items()},
                    diagnosis_ref=e.get("diagnosis_ref"),
                    probabilities=tuple(float(probs[c]) for c in classes) if probs else None,
                    probabilities_file=npz if npz.is_file() else None,
                    lesion_ref_voxels=int(n_ref) if isinstance(n_ref, int | float) else None,
                )
            )
    return CvPredictions(model_dir, tuple(folds), labels or {}, classes or (), tuple(cases))
