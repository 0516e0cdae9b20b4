"""Evaluate a folder of predictions against a folder of references.

The set of evaluated cases is defined by the *references*: a missing prediction is an
error (a silently skipped case would inflate the scores), an extra prediction is only
warned about. Segmentation is scored per label and for the lesion union (overlap, surface
distances in mm on each image's own spacing, volumes), in parallel over cases; diagnoses,
when a reference CSV is given, are scored with accuracy, per-class scores, confusion matrix
and one-vs-rest AUC from the ``p_<class>`` probability columns written by
``autojoint_predict``. Metric definitions: ``docs/evaluation.md``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from autojoint.evaluation.calibration import calibration_scores, class_indices
from autojoint.evaluation.metrics import (
    LESION_KEY,
    absent_label_scores,
    diagnosis_scores,
    segmentation_scores,
)
from autojoint.evaluation.plots import write_figures
from autojoint.evaluation.summary import build_summary
from autojoint.evaluation.surface import check_tolerance
from autojoint.io.files import atomic_write

logger = logging.getLogger(__name__)

MASK_SUFFIX = ".nii.gz"
PRED_DIAGNOSES_NAME = "diagnoses.csv"
PROB_PREFIX = "p_"
CALIBRATED_PREFIX = "pcal_"  # calibrated probabilities (autojoint_predict with a calibration)


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


@dataclass(frozen=True)
class _Diagnoses:
    """Scored diagnoses: reference/predicted class and probabilities of every case with a
    known reference (``y_ref``, ``y_pred``, ``probs`` aligned), plus the reference and
    predicted class of each masked case (``per_case_*``, None where unknown)."""

    classes: list[str]
    scored_cases: list[str]
    y_ref: list[str]
    y_pred: list[str]
    probs: np.ndarray | None
    per_case_ref: list[str | None]
    per_case_pred: list[str | None]
    calibrated: np.ndarray | None = None


def _read_diagnoses(
    cases: list[str], ref_csv: Path, pred_csv: Path, classes: list[str] | None
) -> _Diagnoses:
    """Check both CSVs against the case list and the class set; read ``p_<class>`` columns.

    Every case with a known reference diagnosis is scored, masked or not (partial labels);
    an empty reference diagnosis means unknown. ``cases`` (the masked cases) must each have
    a reference row.
    """
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
        return _Diagnoses([], [], [], [], None, per_case_ref, per_case_pred)
    cases = scored
    prob_diagnoses = [h[len(PROB_PREFIX) :] for h in pred_header if h.startswith(PROB_PREFIX)]
    y_true = [ref_rows[c]["diagnosis"] for c in cases]
    y_pred = [pred_rows[c]["diagnosis"] for c in cases]
    classes = list(classes or prob_diagnoses or sorted(set(y_true) | set(y_pred)))
    for name, ys, path in (("reference", y_true, ref_csv), ("prediction", y_pred, pred_csv)):
        unknown = sorted(set(ys) - set(classes))
        if unknown:
            raise ValueError(f"{path}: {name} diagnosis {unknown} not among classes {classes}")
    probs = None
    if prob_diagnoses:
        lacking = [c for c in classes if c not in prob_diagnoses]
        if lacking:
            raise ValueError(f"{pred_csv}: no probability column for class(es) {lacking}")
        cols = [PROB_PREFIX + c for c in classes]
        try:
            probs = np.array([[float(pred_rows[c][k]) for k in cols] for c in cases])
        except ValueError as err:
            raise ValueError(f"{pred_csv}: non-numeric {PROB_PREFIX}<class> value ({err})") from err
        if not np.all(np.isfinite(probs)):
            raise ValueError(f"{pred_csv}: {PROB_PREFIX}<class> values must be finite numbers")
    else:
        logger.warning("%s: no %s<class> columns; AUC not computed", pred_csv, PROB_PREFIX)
    calibrated = _read_calibrated(pred_csv, pred_header, pred_rows, cases, classes)
    return _Diagnoses(
        classes, cases, y_true, y_pred, probs, per_case_ref, per_case_pred, calibrated
    )


def _read_calibrated(
    pred_csv: Path, header: list[str], rows: dict[str, dict], cases: list[str], classes: list[str]
) -> np.ndarray | None:
    """The ``pcal_<class>`` columns of the scored cases, None when absent or when a case
    was predicted without a calibration (an empty cell: the comparison needs them all)."""
    cols = [CALIBRATED_PREFIX + c for c in classes]
    if not any(h.startswith(CALIBRATED_PREFIX) for h in header):
        return None
    if lacking := [c for c in cols if c not in header]:
        raise ValueError(f"{pred_csv}: no calibrated probability column(s) {lacking}")
    if any(not rows[c][k] for c in cases for k in cols):
        logger.warning(
            "%s: some cases lack %s<class> values; calibration not compared",
            pred_csv,
            CALIBRATED_PREFIX,
        )
        return None
    try:
        calibrated = np.array([[float(rows[c][k]) for k in cols] for c in cases])
    except ValueError as err:
        raise ValueError(
            f"{pred_csv}: non-numeric {CALIBRATED_PREFIX}<class> value ({err})"
        ) from err
    if not np.all(np.isfinite(calibrated)):
        raise ValueError(f"{pred_csv}: {CALIBRATED_PREFIX}<class> values must be finite numbers")
    return calibrated


@dataclass(frozen=True)
class _CaseTask:
    case: str
    pred_path: Path
    ref_path: Path
    label_values: dict[str, int] | None
    tolerance_mm: float
    use_surfel_nsd: bool


@dataclass(frozen=True)
class _CaseResult:
    case: str
    metrics: dict[str, dict[str, float]]
    ref_values: set[int]
    num_voxels: int
    spacing: tuple[float, ...]


def _score_case(task: _CaseTask) -> _CaseResult:
    """Read one prediction/reference pair and score it (runs in a worker process)."""
    ref_img, pred_img = sitk.ReadImage(str(task.ref_path)), sitk.ReadImage(str(task.pred_path))
    _check_geometry(pred_img, ref_img, task.pred_path, task.ref_path)
    ref, pred = _read_labels(ref_img, task.ref_path), _read_labels(pred_img, task.pred_path)
    # SimpleITK spacing is (x, y, z); the array axes are (z, y, x).
    spacing = tuple(float(s) for s in reversed(ref_img.GetSpacing()))
    ref_vals = _nonzero_values(ref)
    if task.label_values is None:
        # Final label set is only known after all references are read; score every
        # value present here and reconcile afterwards, instead of reading images twice.
        case_labels = {f"label_{v}": v for v in sorted(ref_vals | _nonzero_values(pred))}
    else:
        case_labels = task.label_values
    metrics = segmentation_scores(
        pred,
        ref,
        case_labels,
        spacing=spacing,
        tolerance_mm=task.tolerance_mm,
        use_surfel_nsd=task.use_surfel_nsd,
    )
    return _CaseResult(task.case, metrics, ref_vals, int(ref.size), spacing)


def _map_cases(tasks: list[_CaseTask], num_workers: int) -> list[_CaseResult]:
    """Score every case, in ``num_workers`` processes when > 1; keeps the case order.

    A worker's exception is re-raised here as the original error (ProcessPoolExecutor
    pickles it back), so a bad file is named just as in a serial run.
    """
    bar = {"total": len(tasks), "desc": "evaluating", "unit": "case", "disable": None}
    if num_workers <= 1 or len(tasks) <= 1:
        return [_score_case(t) for t in tqdm(tasks, **bar)]
    with ProcessPoolExecutor(min(num_workers, len(tasks))) as pool:
        return list(tqdm(pool.map(_score_case, tasks), **bar))


def evaluate_folder(
    pred_dir: Path,
    ref_dir: Path,
    *,
    label_values: dict[str, int] | None = None,
    ref_diagnoses_csv: Path | None = None,
    pred_diagnoses_csv: Path | None = None,
    classes: list[str] | None = None,
    tolerance_mm: float = 1.0,
    num_workers: int = 1,
    use_surfel_nsd: bool = False,
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
        tolerance_mm: NSD/ASO tolerance in mm.
        num_workers: processes scoring cases in parallel (1 = in this process).
        use_surfel_nsd: also score ``nsd_surfel``, the NSD with area-weighted surfels
            (DeepMind's convention, :mod:`autojoint.evaluation.surfels`), per label and for
            ``lesion``; off by default, so the existing keys and values are unchanged.

    Returns:
        The summary dict of :func:`autojoint.evaluation.summary.build_summary`
        (``metric_per_case``, ``mean``, ``diagnosis``, ... and the first release's
        ``per_case`` / ``classification``); floats may be NaN (undefined), see
        :func:`write_summary` for serialisation.

    Raises:
        FileNotFoundError: a reference case has no prediction, or a diagnoses CSV is missing.
        ValueError: geometry mismatch, no reference cases, malformed diagnoses CSVs or a
            bad tolerance.
    """
    check_tolerance(tolerance_mm)
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
    dx: _Diagnoses | None = None
    if ref_diagnoses_csv is not None:
        pred_csv = Path(pred_diagnoses_csv or pred_dir / PRED_DIAGNOSES_NAME)
        dx = _read_diagnoses(cases, Path(ref_diagnoses_csv), pred_csv, classes)
    tasks = [
        _CaseTask(c, preds[c], refs[c], label_values, float(tolerance_mm), use_surfel_nsd)
        for c in cases
    ]
    results = _map_cases(tasks, num_workers)

    ref_values_seen = set().union(*(r.ref_values for r in results))
    if label_values is None:
        label_values = {f"label_{v}": v for v in sorted(ref_values_seen)}
        for r in results:
            for name in label_values:
                if name not in r.metrics:
                    r.metrics[name] = absent_label_scores(
                        r.num_voxels, spacing=r.spacing, use_surfel_nsd=use_surfel_nsd
                    )
            for name in [n for n in r.metrics if n not in label_values and n != LESION_KEY]:
                del r.metrics[name]
            r.metrics[LESION_KEY] = r.metrics.pop(LESION_KEY)  # keep "lesion" last
    else:
        unlabelled = sorted(ref_values_seen - {int(v) for v in label_values.values()})
        if unlabelled:
            logger.warning(
                "reference values %s are not in label_values; only in 'lesion'", unlabelled
            )

    scored_index = {c: i for i, c in enumerate(dx.scored_cases)} if dx else {}
    entries: list[dict] = []
    for i, r in enumerate(results):
        entry: dict = {
            "case": r.case,
            "reference_file": str(refs[r.case]),
            "prediction_file": str(preds[r.case]),
            "spacing": list(r.spacing),
            "metrics": r.metrics,
            "diagnosis_ref": dx.per_case_ref[i] if dx else None,
            "diagnosis_pred": dx.per_case_pred[i] if dx else None,
        }
        if dx is not None and dx.probs is not None and dx.per_case_ref[i] is not None:
            row = scored_index[r.case]
            entry["probabilities"] = dict(zip(dx.classes, dx.probs[row].tolist(), strict=True))
        entries.append(entry)
    diagnosis = None
    if dx is not None and dx.y_ref:
        # All cases with a known diagnosis, masked or not (partial labels), not only entries.
        diagnosis = diagnosis_scores(dx.y_ref, dx.y_pred, dx.classes, dx.probs)
    summary = build_summary(entries, label_values, tolerance_mm=tolerance_mm, diagnosis=diagnosis)
    if dx is not None and dx.y_ref and dx.probs is not None:
        summary["calibration"] = calibration_scores(
            dx.probs, class_indices(dx.y_ref, dx.classes), calibrated=dx.calibrated
        )
    return summary


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
    text = json.dumps(_json_safe(summary), indent=2, allow_nan=False)
    atomic_write(Path(path), lambda fh: fh.write(text + "\n"))


def write_report(summary: dict, path: Path, *, figures: bool = True) -> list[str]:
    """Write the figures (unless ``figures`` is False) beside ``path``, then the summary.

    The written PNG names are recorded in the summary under ``"figures"``; the summary is
    written last so its presence means the report is complete.
    """
    path = Path(path)
    names = write_figures(summary, path.parent) if figures else []
    summary["figures"] = names
    write_summary(summary, path)
    return names
