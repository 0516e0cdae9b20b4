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

logger = logging.getLogger(__name__)

LESION_KEY = "lesion"
"""Name of the extra segmentation entry: union of all non-zero labels (lesion vs. not)."""

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


def _scores_from_masks(pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    tp, fp, fn, _ = confusion_counts(pred, ref)
    denom = 2 * tp + fp + fn
    return {
        "dice": (2.0 * tp / denom) if denom else NAN,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "n_ref": tp + fn,
        "n_pred": tp + fp,
    }


def segmentation_scores(
    pred_labels: np.ndarray, ref_labels: np.ndarray, label_values: Mapping[str, int]
) -> dict[str, dict[str, float]]:
    """Per-label overlap statistics of two integer label maps.

    Args:
        pred_labels: predicted label map (Z, Y, X), 0 = background.
        ref_labels: reference label map of the same shape.
        label_values: name -> integer label, e.g. ``{"ground_glass": 1, "consolidation": 2}``.

    Returns:
        ``{name: {"dice", "tp", "fp", "fn", "n_ref", "n_pred"}}`` for every named label,
        plus ``"lesion"`` computed on ``labels != 0`` for both maps. The lesion entry shows
        whether lesions are found at all, separately from whether their *type* is right.
    """
    pred_labels = np.asarray(pred_labels)
    ref_labels = np.asarray(ref_labels)
    if pred_labels.shape != ref_labels.shape:
        raise ValueError(
            f"prediction shape {pred_labels.shape} differs from reference shape {ref_labels.shape}"
        )
    if LESION_KEY in label_values:
        raise ValueError(f"label name {LESION_KEY!r} is reserved for the union of all labels")
    out: dict[str, dict[str, float]] = {}
    for name, value in label_values.items():
        if int(value) == 0:
            raise ValueError(f"label {name!r} has value 0, which is background")
        out[name] = _scores_from_masks(pred_labels == value, ref_labels == value)
    out[LESION_KEY] = _scores_from_masks(pred_labels != 0, ref_labels != 0)
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
