"""Evaluate a folder of predictions against a folder of references.

The set of evaluated cases is defined by the *references*: a missing prediction is an
error (a silently skipped case would inflate the scores), an extra prediction is only
warned about. Segmentation is scored per label and for the lesion union; diagnoses, when
a reference CSV is given, are scored with :func:`classification_scores` and one-vs-rest
AUC from the ``p_<class>`` probability columns written by ``autojoint_predict``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from autojoint.evaluation.metrics import (
    LESION_KEY,
    classification_scores,
    roc_auc_one_vs_rest,
    segmentation_scores,
)

logger = logging.getLogger(__name__)

MASK_SUFFIX = ".nii.gz"
PRED_DIAGNOSES_NAME = "diagnoses.csv"
PROB_PREFIX = "p_"


def _list_cases(folder: Path) -> dict[str, Path]:
    """``{case: path}`` of the ``*.nii.gz`` files in ``folder`` (hidden temp files skipped)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: folder not found")
    return {
        p.name[: -len(MASK_SUFFIX)]: p
        for p in sorted(folder.iterdir())
        if p.name.endswith(MASK_SUFFIX) and not p.name.startswith(".") and p.is_file()
    }


# (name, getter, absolute tolerance, relative tolerance); mm for origin.
_GEOMETRY_TOLERANCES = (
    ("spacing", sitk.Image.GetSpacing, 0.0, 1e-4),
    ("origin", sitk.Image.GetOrigin, 1e-3, 0.0),
    ("direction", sitk.Image.GetDirection, 1e-4, 0.0),
)


def _check_geometry(pred: sitk.Image, ref: sitk.Image, pred_path: Path, ref_path: Path) -> None:
    """Refuse to compare masks on different grids: voxel-wise Dice would be meaningless."""
    size_p, size_r = pred.GetSize(), ref.GetSize()
    problems = [f"size {size_p} vs {size_r}"] if size_p != size_r else []
    for name, get, atol, rtol in _GEOMETRY_TOLERANCES:
        a, b = np.array(get(pred)), np.array(get(ref))
        if a.shape != b.shape or np.any(np.abs(a - b) > atol + rtol * np.maximum(abs(a), abs(b))):
            problems.append(f"{name} {tuple(a.tolist())} vs {tuple(b.tolist())}")
    if problems:
        raise ValueError(
            f"geometry of prediction {pred_path} does not match reference {ref_path}: "
            f"{'; '.join(problems)}. Predictions must be written on the reference image grid."
        )


def _read_labels(img: sitk.Image, path: Path) -> np.ndarray:
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"{path}: label maps must have one component per voxel")
    arr = sitk.GetArrayFromImage(img)
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError(f"{path}: label map contains non-integer values")
        arr = arr.astype(np.int64)
    return arr


def _nonzero_values(arr: np.ndarray) -> set[int]:
    """Non-zero labels present; bincount is linear time, unlike np.unique's sort."""
    if arr.size and np.can_cast(arr.dtype, np.intp) and arr.min() >= 0 and arr.max() < 65536:
        return {int(v) for v in np.flatnonzero(np.bincount(arr.ravel())) if v != 0}
    return {int(v) for v in np.unique(arr) if v != 0}


def _read_csv(path: Path, hint: str = "") -> tuple[list[str], dict[str, dict]]:
    """Rows of a CSV keyed by ``case``; checks the header and duplicate cases."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: diagnoses CSV not found{hint}")
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in ("case", "diagnosis") if c not in header]
        if missing:
            raise ValueError(f"{path}: header {header} lacks required column(s) {missing}")
        rows: dict[str, dict] = {}
        for raw in reader:
            row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
            case = row["case"]
            if case in rows:
                raise ValueError(f"{path}: case {case!r} appears more than once")
            rows[case] = row
    return header, rows


def _score_diagnoses(
    cases: list[str], ref_csv: Path, pred_csv: Path, classes: list[str] | None
) -> tuple[dict | None, list[str | None], list[str | None]]:
    """Classification scores (+ AUC from ``p_<class>`` columns) over every case with a known
    reference diagnosis, masked or not (partial labels); reference and predicted diagnosis
    of each case in ``cases`` (None where the reference diagnosis is empty = unknown)."""
    _, ref_rows = _read_csv(ref_csv)
    hint = "; run autojoint_predict, which writes diagnoses.csv next to the predicted masks"
    pred_header, pred_rows = _read_csv(pred_csv, hint)
    absent = [c for c in cases if c not in ref_rows]
    if absent:
        raise ValueError(f"{ref_csv}: reference diagnosis missing for case(s) {absent}")
    scored = [c for c, row in ref_rows.items() if row["diagnosis"]]
    absent = [c for c in scored if c not in pred_rows]
    if absent:
        raise ValueError(f"{pred_csv}: prediction diagnosis missing for case(s) {absent}")
    per_case_ref = [ref_rows[c]["diagnosis"] or None for c in cases]
    per_case_pred = [pred_rows[c]["diagnosis"] if ref_rows[c]["diagnosis"] else None for c in cases]
    if not scored:
        logger.warning("%s: no case has a known diagnosis; diagnosis not scored", ref_csv)
        return None, per_case_ref, per_case_pred
    cases = scored
    prob_classes = [h[len(PROB_PREFIX) :] for h in pred_header if h.startswith(PROB_PREFIX)]
    y_true = [ref_rows[c]["diagnosis"] for c in cases]
    y_pred = [pred_rows[c]["diagnosis"] for c in cases]
    classes = list(classes or prob_classes or sorted(set(y_true) | set(y_pred)))
    for name, ys, path in (("reference", y_true, ref_csv), ("prediction", y_pred, pred_csv)):
        unknown = sorted(set(ys) - set(classes))
        if unknown:
            raise ValueError(f"{path}: {name} diagnosis {unknown} not among classes {classes}")
    result = classification_scores(y_true, y_pred, classes)
    result["auc"] = None
    if prob_classes:
        lacking = [c for c in classes if c not in prob_classes]
        if lacking:
            raise ValueError(f"{pred_csv}: no probability column for class(es) {lacking}")
        cols = [PROB_PREFIX + c for c in classes]
        try:
            probs = np.array([[float(pred_rows[c][k]) for k in cols] for c in cases])
        except ValueError as err:
            raise ValueError(f"{pred_csv}: non-numeric {PROB_PREFIX}<class> value ({err})") from err
        result["auc"] = roc_auc_one_vs_rest(y_true, probs, classes)
    else:
        logger.warning("%s: no %s<class> columns; AUC not computed", pred_csv, PROB_PREFIX)
    return result, per_case_ref, per_case_pred


# Scores of a label absent from both maps of a case (Dice undefined).
_EMPTY_SCORES = {"dice": math.nan, "tp": 0, "fp": 0, "fn": 0, "n_ref": 0, "n_pred": 0}


def _mean_dice(per_case: list[dict], name: str) -> dict:
    """Mean Dice over the cases where it is defined (NaN = empty/empty, nnU-Net style)."""
    defined = [d for e in per_case if not math.isnan(d := e["segmentation"][name]["dice"])]
    return {
        "dice": float(np.mean(defined)) if defined else math.nan,
        "num_cases_defined": len(defined),
    }


def evaluate_folder(
    pred_dir: Path,
    ref_dir: Path,
    *,
    label_values: dict[str, int] | None = None,
    ref_diagnoses_csv: Path | None = None,
    pred_diagnoses_csv: Path | None = None,
    classes: list[str] | None = None,
) -> dict:
    """Score every reference case against its prediction.

    Args:
        pred_dir: predicted masks ``CASE.nii.gz`` and ``diagnoses.csv``
            (``case,diagnosis,p_<class>...``).
        ref_dir: reference masks ``CASE.nii.gz``; these define the evaluated cases.
        label_values: name -> label value. Default: every non-zero value found in the
            references, named ``label_<v>``.
        ref_diagnoses_csv: ``case,diagnosis`` reference CSV; diagnosis is scored only if given.
        pred_diagnoses_csv: predicted diagnoses, default ``pred_dir/diagnoses.csv``.
        classes: class order; default the ``p_<class>`` column order of the prediction
            CSV, else the sorted class names seen.

    Returns:
        ``{"num_cases", "labels", "per_case", "mean", "classification"}``; floats may be
        NaN (undefined), see :func:`write_summary` for serialisation.

    Raises:
        FileNotFoundError: a reference case has no prediction, or a diagnoses CSV is missing.
        ValueError: geometry mismatch, no reference cases, or malformed diagnoses CSVs.
    """
    pred_dir, ref_dir = Path(pred_dir), Path(ref_dir)
    refs = _list_cases(ref_dir)
    if not refs:
        raise ValueError(f"{ref_dir}: no reference masks *{MASK_SUFFIX} found")
    preds = _list_cases(pred_dir)
    for case in refs:
        if case not in preds:
            raise FileNotFoundError(
                f"{pred_dir / (case + MASK_SUFFIX)}: prediction for reference case {case!r} "
                f"is missing; run autojoint_predict on {case} first"
            )
    extra = sorted(set(preds) - set(refs))
    if extra:
        logger.warning("ignoring %d prediction(s) without reference: %s", len(extra), extra)

    cases = list(refs)
    # Diagnoses first: a malformed CSV should fail before minutes of image reading.
    classification: dict | None = None
    y_ref: Sequence[str | None] = [None] * len(cases)
    y_pred: Sequence[str | None] = [None] * len(cases)
    if ref_diagnoses_csv is not None:
        pred_csv = Path(pred_diagnoses_csv or pred_dir / PRED_DIAGNOSES_NAME)
        classification, y_ref, y_pred = _score_diagnoses(
            cases, Path(ref_diagnoses_csv), pred_csv, classes
        )
    per_case: list[dict] = []
    ref_values_seen: set[int] = set()
    rows = list(zip(cases, y_ref, y_pred, strict=True))
    for case, ref_dx, pred_dx in tqdm(rows, desc="evaluating", unit="case", disable=None):
        ref_img, pred_img = sitk.ReadImage(str(refs[case])), sitk.ReadImage(str(preds[case]))
        _check_geometry(pred_img, ref_img, preds[case], refs[case])
        ref, pred = _read_labels(ref_img, refs[case]), _read_labels(pred_img, preds[case])
        ref_vals = _nonzero_values(ref)
        ref_values_seen |= ref_vals
        if label_values is None:
            # Final label set is only known after all references are read; score every
            # value present here and reconcile below, instead of reading images twice.
            vals = ref_vals | _nonzero_values(pred)
            case_labels = {f"label_{v}": v for v in sorted(vals)}
        else:
            case_labels = label_values
        seg = segmentation_scores(pred, ref, case_labels)
        per_case.append(
            {"case": case, "segmentation": seg, "diagnosis_ref": ref_dx, "diagnosis_pred": pred_dx}
        )

    if label_values is None:
        label_values = {f"label_{v}": v for v in sorted(ref_values_seen)}
        for entry in per_case:
            seg = entry["segmentation"]
            entry["segmentation"] = {
                name: seg.get(name, dict(_EMPTY_SCORES)) for name in [*label_values, LESION_KEY]
            }
    else:
        unlabelled = sorted(ref_values_seen - {int(v) for v in label_values.values()})
        if unlabelled:
            logger.warning(
                "reference values %s are not in label_values; only in 'lesion'", unlabelled
            )

    mean = {name: _mean_dice(per_case, name) for name in [*label_values, LESION_KEY]}

    return {
        "num_cases": len(cases),
        "labels": {k: int(v) for k, v in label_values.items()},
        "per_case": per_case,
        "mean": mean,
        "classification": classification,
    }


def _json_safe(obj: object) -> object:
    """Recursively turn NaN/inf into None and numpy scalars/arrays into plain Python."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_summary(summary: dict, path: Path) -> None:
    """Write ``summary`` as strict JSON (NaN -> ``null``) atomically.

    Strict JSON because ``NaN`` literals break most non-Python JSON readers; atomic
    (temp file in the same directory, then ``os.replace``) so an interrupted run never
    leaves a truncated summary that looks valid.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_json_safe(summary), indent=2, allow_nan=False)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
