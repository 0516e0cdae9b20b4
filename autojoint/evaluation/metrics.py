"""Pure evaluation metrics for segmentation masks and scan-level diagnoses.

Everything here works on in-memory numpy arrays / Python lists so it can be unit-tested
against brute-force references without touching the file system.

Undefined values are returned as ``float('nan')`` rather than a made-up number, following
the nnU-Net convention: a Dice score on a case where neither the reference nor the
prediction contains the structure is *undefined* (not 0, not 1) and must be excluded from
means (use ``np.nanmean``). Callers serialising results turn NaN into JSON ``null``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import rankdata

from autojoint.evaluation.surface import (
    SURFACE_METRICS,
    check_spacing,
    check_tolerance,
    surface_metrics,
)
from autojoint.evaluation.surfels import surfel_nsd

logger = logging.getLogger(__name__)

LESION_KEY = "lesion"
"""Name of the extra segmentation entry: union of all non-zero labels (lesion vs. not)."""

SURFEL_NSD_KEY = "nsd_surfel"
"""Opt-in NSD with area-weighted surfels (:mod:`autojoint.evaluation.surfels`), beside ``nsd``."""

NAN = float("nan")


def _as_bool_pair(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred)
    ref = np.asarray(ref)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    return pred.astype(bool, copy=False), ref.astype(bool, copy=False)


def confusion_counts(pred: np.ndarray, ref: np.ndarray) -> tuple[int, int, int, int]:
    """Voxel-wise ``(tp, fp, fn, tn)`` of two boolean masks of equal shape.

    Non-boolean inputs are interpreted as ``!= 0``. Returned as Python ints so they
    serialise to JSON without conversion.
    """
    p, r = _as_bool_pair(pred, ref)
    tp = int(np.count_nonzero(p & r))
    n_pred = int(np.count_nonzero(p))
    n_ref = int(np.count_nonzero(r))
    fp = n_pred - tp
    fn = n_ref - tp
    tn = int(p.size) - tp - fp - fn
    return tp, fp, fn, tn


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice overlap ``2|A∩B| / (|A|+|B|)`` of two boolean masks.

    Returns:
        Dice in ``[0, 1]``, or ``nan`` when both masks are empty. An empty/empty case
        carries no information about segmentation quality, so (as in nnU-Net) it is
        undefined and excluded from averages instead of counting as a perfect 1.
    """
    tp, fp, fn, _ = confusion_counts(pred, ref)
    denom = 2 * tp + fp + fn
    if denom == 0:
        return NAN
    return 2.0 * tp / denom


SEGMENTATION_METRICS = (
    "dice",
    "iou",
    "sensitivity",
    "specificity",
    "precision",
    *SURFACE_METRICS,
    SURFEL_NSD_KEY,
    "volume_pred_ml",
    "volume_ref_ml",
)
"""Float metrics of one label of one case (averaged in summaries); counts come in addition.
``nsd_surfel`` is present only when asked for (``use_surfel_nsd``)."""


def overlap_scores(
    tp: int, fp: int, fn: int, tn: int, *, voxel_volume_mm3: float | None = None
) -> dict[str, float]:
    """Voxel-overlap metrics from confusion counts; NaN where a denominator is 0.

    Dice and IoU are NaN only when both masks are empty, sensitivity when the reference is
    empty, precision when the prediction is empty, specificity when no voxel is background
    in the reference. With ``voxel_volume_mm3``, ``volume_pred_ml`` and ``volume_ref_ml``
    are added (1 ml = 1000 mm³).
    """
    out: dict[str, float] = {
        "dice": _safe_div(2 * tp, 2 * tp + fp + fn),
        "iou": _safe_div(tp, tp + fp + fn),
        "sensitivity": _safe_div(tp, tp + fn),
        "specificity": _safe_div(tn, tn + fp),
        "precision": _safe_div(tp, tp + fp),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "n_ref": tp + fn,
        "n_pred": tp + fp,
    }
    if voxel_volume_mm3 is not None:
        out["volume_pred_ml"] = (tp + fp) * voxel_volume_mm3 / 1000.0
        out["volume_ref_ml"] = (tp + fn) * voxel_volume_mm3 / 1000.0
    return out


def absent_label_scores(
    num_voxels: int, *, spacing: Sequence[float] | None = None, use_surfel_nsd: bool = False
) -> dict[str, float]:
    """Scores of a label that neither map of a case contains (Dice, distances NaN)."""
    out = overlap_scores(0, 0, 0, int(num_voxels), voxel_volume_mm3=_voxel_volume(spacing))
    if spacing is not None:
        out.update(dict.fromkeys(_surface_keys(use_surfel_nsd), NAN))
    return out


def _surface_keys(use_surfel_nsd: bool) -> tuple[str, ...]:
    return (*SURFACE_METRICS, SURFEL_NSD_KEY) if use_surfel_nsd else SURFACE_METRICS


def _voxel_volume(spacing: Sequence[float] | None) -> float | None:
    return None if spacing is None else float(np.prod([float(s) for s in spacing]))


def _scores_from_masks(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float] | None = None,
    tolerance_mm: float = 1.0,
    use_surfel_nsd: bool = False,
) -> dict[str, float]:
    tp, fp, fn, tn = confusion_counts(pred, ref)
    out = overlap_scores(tp, fp, fn, tn, voxel_volume_mm3=_voxel_volume(spacing))
    if spacing is not None:
        if tp + fp + fn == 0:  # both empty: skip the erosion and distance transforms
            out.update(dict.fromkeys(_surface_keys(use_surfel_nsd), NAN))
            return out
        out.update(surface_metrics(pred, ref, spacing, tolerance_mm=tolerance_mm))
        if use_surfel_nsd:
            out[SURFEL_NSD_KEY] = surfel_nsd(pred, ref, spacing, tolerance_mm=tolerance_mm)
    return out


def segmentation_scores(
    pred_labels: np.ndarray,
    ref_labels: np.ndarray,
    label_values: Mapping[str, int],
    *,
    spacing: Sequence[float] | None = None,
    tolerance_mm: float = 1.0,
    use_surfel_nsd: bool = False,
) -> dict[str, dict[str, float]]:
    """Per-label overlap (and, given the spacing, surface and volume) metrics.

    Args:
        pred_labels: predicted label map (Z, Y, X), 0 = background.
        ref_labels: reference label map of the same shape.
        label_values: name -> integer label, e.g. ``{"ground_glass": 1, "consolidation": 2}``.
        spacing: voxel size in mm per array axis. Surface metrics (``nsd``, ``asd``,
            ``hd95``, ``rmsd``, ``aso``, see :mod:`autojoint.evaluation.surface`) and
            volumes in ml need it; without it only the overlap metrics are returned.
        tolerance_mm: NSD/ASO tolerance in mm.
        use_surfel_nsd: with a spacing, also ``"nsd_surfel"``: the NSD with area-weighted
            surfels (:func:`autojoint.evaluation.surfels.surfel_nsd`), at the same tolerance.

    Returns:
        ``{name: {"dice", "iou", "sensitivity", "specificity", "precision", "tp", "fp",
        "fn", "tn", "n_ref", "n_pred"[, "volume_pred_ml", "volume_ref_ml", "nsd", "asd",
        "hd95", "rmsd", "aso"[, "nsd_surfel"]]}}`` for every named label, plus ``"lesion"``
        computed on ``labels != 0`` for both maps. The lesion entry shows whether lesions
        are found at all, separately from whether their *type* is right.
    """
    pred_labels = np.asarray(pred_labels)
    ref_labels = np.asarray(ref_labels)
    if pred_labels.shape != ref_labels.shape:
        raise ValueError(
            f"prediction shape {pred_labels.shape} differs from reference shape {ref_labels.shape}"
        )
    if LESION_KEY in label_values:
        raise ValueError(f"label name {LESION_KEY!r} is reserved for the union of all labels")
    if spacing is not None:
        spacing = check_spacing(spacing, pred_labels.ndim)
    check_tolerance(tolerance_mm)
    out: dict[str, dict[str, float]] = {}
    pred_any, ref_any = pred_labels != 0, ref_labels != 0
    num_any = (int(np.count_nonzero(pred_any)), int(np.count_nonzero(ref_any)))
    lesion: dict[str, float] | None = None
    for name, value in label_values.items():
        if int(value) == 0:
            raise ValueError(f"label {name!r} has value 0, which is background")
        pred_v, ref_v = pred_labels == value, ref_labels == value
        out[name] = _scores_from_masks(pred_v, ref_v, spacing, tolerance_mm, use_surfel_nsd)
        if (int(np.count_nonzero(pred_v)), int(np.count_nonzero(ref_v))) == num_any:
            # Only this label occurs, so the lesion union is the same pair of masks: reuse
            # its scores rather than repeat the distance transforms (binary datasets).
            lesion = dict(out[name])
    out[LESION_KEY] = lesion or _scores_from_masks(
        pred_any, ref_any, spacing, tolerance_mm, use_surfel_nsd
    )
    return out


def _safe_div(num: float, den: float) -> float:
    return num / den if den else NAN


def classification_scores(
    y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str]
) -> dict:
    """Accuracy, confusion matrix and per-class one-vs-rest scores of scan-level diagnoses.

    Conventions for undefined values (returned as ``nan``, not 0, so they are visible and
    can be excluded from means):

    * sensitivity (recall) of a class with no reference cases;
    * specificity of a class that every reference case belongs to;
    * precision of a class that was never predicted;
    * F1 of a class that is neither in the reference nor predicted. If a class has
      reference cases but no correct predictions, F1 = ``2tp/(2tp+fp+fn)`` = 0.

    ``macro_f1`` is the mean F1 over classes where F1 is defined.

    Returns:
        ``{"accuracy", "num_cases", "classes", "confusion_matrix" (rows = reference,
        cols = predicted, class order as in "classes"), "per_class": {cls: {"sensitivity",
        "specificity", "precision", "f1", "n_ref", "n_pred"}}, "macro_f1"}``.
    """
    classes = [str(c) for c in classes]
    if len(set(classes)) != len(classes):
        raise ValueError(f"duplicate class names in {classes}")
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} reference labels but {len(y_pred)} predictions")
    if len(y_true) == 0:
        raise ValueError("no cases to score")
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({str(y) for y in [*y_true, *y_pred]} - set(index))
    if unknown:
        raise ValueError(f"labels {unknown} are not among the classes {classes}")

    cm = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for t, p in zip(y_true, y_pred, strict=True):
        cm[index[str(t)], index[str(p)]] += 1
    n = int(cm.sum())
    per_class: dict[str, dict[str, float]] = {}
    for i, c in enumerate(classes):
        tp = int(cm[i, i])
        fn = int(cm[i, :].sum()) - tp
        fp = int(cm[:, i].sum()) - tp
        tn = n - tp - fn - fp
        per_class[c] = {
            "sensitivity": _safe_div(tp, tp + fn),
            "specificity": _safe_div(tn, tn + fp),
            "precision": _safe_div(tp, tp + fp),
            "f1": _safe_div(2 * tp, 2 * tp + fp + fn),
            "n_ref": tp + fn,
            "n_pred": tp + fp,
        }
    f1s = [v["f1"] for v in per_class.values() if not math.isnan(v["f1"])]
    return {
        "accuracy": float(np.trace(cm)) / n,
        "num_cases": n,
        "classes": classes,
        "confusion_matrix": cm.tolist(),
        "per_class": per_class,
        "macro_f1": float(np.mean(f1s)) if f1s else NAN,
    }


def _auc_mann_whitney(scores: np.ndarray, positive: np.ndarray) -> float:
    n_pos = int(np.count_nonzero(positive))
    n_neg = int(positive.size) - n_pos
    if n_pos == 0 or n_neg == 0:
        return NAN
    # Average ranks make a tied positive/negative pair contribute exactly 1/2,
    # which is the standard (trapezoidal) ROC AUC.
    ranks = rankdata(scores, method="average")
    u = float(ranks[positive].sum()) - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


def roc_auc_one_vs_rest(
    y_true: Sequence[str], probs: np.ndarray, classes: Sequence[str]
) -> dict[str, float]:
    """Exact one-vs-rest ROC AUC per class, via the Mann–Whitney U statistic.

    AUC equals the probability that a random positive case scores higher than a random
    negative one (ties count 1/2); computing it from ranks is exact and O(n log n),
    with no threshold sweep or interpolation.

    Args:
        y_true: reference class name per case.
        probs: ``(N, C)`` scores, column ``j`` belonging to ``classes[j]``.
        classes: class names in column order.

    Returns:
        ``{cls: auc}`` (``nan`` when a class has no positive or no negative cases, since
        the ROC curve is then undefined) plus ``"macro"``: mean over the defined classes.
    """
    classes = [str(c) for c in classes]
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape != (len(y_true), len(classes)):
        raise ValueError(
            f"probs must have shape (N={len(y_true)}, C={len(classes)}), got {probs.shape}"
        )
    if not np.all(np.isfinite(probs)):
        raise ValueError("probs contain NaN or infinite values")
    if "macro" in classes:
        raise ValueError("class name 'macro' is reserved in the AUC result")
    unknown = sorted({str(y) for y in y_true} - set(classes))
    if unknown:
        raise ValueError(f"labels {unknown} are not among the classes {classes}")
    truth = np.array([str(y) for y in y_true], dtype=object)
    out: dict[str, float] = {}
    for j, c in enumerate(classes):
        out[c] = _auc_mann_whitney(probs[:, j], truth == c)
    defined = [v for v in out.values() if not math.isnan(v)]
    out["macro"] = float(np.mean(defined)) if defined else NAN
    return out


def roc_curve(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC points ``(fpr, tpr)`` of one-vs-rest scores, from (0, 0) to (1, 1).

    One point per distinct score (ties move diagonally), so the trapezoidal area under
    these points equals the Mann–Whitney AUC of :func:`roc_auc_one_vs_rest`.

    Raises:
        ValueError: there are no positive or no negative cases (the curve is undefined).
    """
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(np.count_nonzero(positive))
    n_neg = int(positive.size) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC curve needs at least one positive and one negative case")
    order = np.argsort(-scores, kind="stable")
    s, pos = scores[order], positive[order]
    # Last index of each run of equal scores: a threshold between distinct scores.
    ends = np.flatnonzero(np.r_[s[1:] != s[:-1], True])
    tps = np.cumsum(pos)[ends]
    fps = (ends + 1) - tps
    return np.r_[0.0, fps / n_neg], np.r_[0.0, tps / n_pos]


def diagnosis_scores(
    y_true: Sequence[str],
    y_pred: Sequence[str],
    classes: Sequence[str],
    probs: np.ndarray | None = None,
) -> dict:
    """The ``diagnosis`` block of a summary: classification scores, AUC and ROC curves.

    Args:
        y_true: reference class per case.
        y_pred: predicted class per case.
        classes: class names (order of the confusion matrix and of ``probs`` columns).
        probs: optional ``(N, C)`` class probabilities; without them AUC and ROC are None.

    Returns:
        :func:`classification_scores` plus ``"auc"`` (``{cls, "macro"}`` or None),
        ``"macro_auc"``, an ``"auc"`` entry in every ``per_class`` block and ``"roc"``
        (``{cls: {"fpr": [...], "tpr": [...]}}`` for classes with positives and negatives).
    """
    out = classification_scores(y_true, y_pred, classes)
    out.update(auc=None, macro_auc=NAN, roc=None)
    for cls in out["per_class"].values():
        cls["auc"] = NAN
    if probs is None:
        return out
    auc = roc_auc_one_vs_rest(y_true, probs, classes)
    truth = np.array([str(y) for y in y_true], dtype=object)
    roc: dict[str, dict[str, list[float]]] = {}
    for j, c in enumerate(out["classes"]):
        out["per_class"][c]["auc"] = auc[c]
        if not math.isnan(auc[c]):
            fpr, tpr = roc_curve(np.asarray(probs)[:, j], truth == c)
            roc[c] = {"fpr": fpr.tolist(), "tpr": tpr.tolist()}
    out.update(auc=auc, macro_auc=auc["macro"], roc=roc)
    return out
