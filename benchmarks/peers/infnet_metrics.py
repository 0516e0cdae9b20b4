"""Dice, sensitivity and specificity in the convention of Inf-Net's evaluation toolbox.

Inf-Net (Fan et al., IEEE TMI 2020) and the papers that copy its tables score a
*probability map*, not a mask. For each image (read from the toolbox's ``main.m`` and
``Fmeasure_calu.m`` in github.com/DengPingFan/Inf-Net, ``EvaluationTool/``):

1. the map is resized to the ground truth's size (ours already is) and min-max normalised
   to [0, 1] per image;
2. at each of 256 thresholds ``t = 1, 254/255, ..., 1/255, 0`` the map is binarised with
   ``>= t``; Dice = 2 TP / (|GT| + |P|), sensitivity = TP / |GT|, specificity =
   TN / (TN + FP), all three set to 0 when TP = 0;
3. the reported figure ("mean Dice") averages over the thresholds and the images.

Two consequences a reader of the published tables should know: a hard 0/1 mask scores
``(255 D + D_all) / 256`` (at ``t = 0`` everything is foreground), and an image whose
ground truth is empty always scores 0 (10 of the 48 consolidation masks are empty, so the
consolidation columns cannot exceed 38/48). We keep those rules so our rows stand in the
same table as the published ones; our own Dice (autojoint_evaluate) is reported beside them.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

NUM_THRESHOLDS = 256
THRESHOLDS = 1.0 - np.arange(NUM_THRESHOLDS) / (NUM_THRESHOLDS - 1)
"""``1, 254/255, ..., 0``: the toolbox's ``1:-1/255:0``."""


def minmax_normalise(prob: np.ndarray) -> np.ndarray:
    """``(p - min) / (max - min)``; a constant map becomes all zeros (nothing stands out)."""
    p = np.asarray(prob, dtype=np.float64)
    lo, hi = float(p.min()), float(p.max())
    if hi - lo <= 0:
        return np.zeros_like(p)
    return (p - lo) / (hi - lo)


def toolbox_curves(prob: np.ndarray, gt: np.ndarray) -> dict[str, np.ndarray]:
    """Dice, sensitivity and specificity at each of the 256 thresholds for one image.

    Args:
        prob: foreground probability (or any score) on the ground truth's grid.
        gt: ground-truth mask of the same shape (non-zero = foreground).

    Returns:
        ``{"dice", "sensitivity", "specificity"}``, each of shape ``(256,)`` in threshold
        order ``1 .. 0``.

    Raises:
        ValueError: shapes differ.
    """
    p, g = np.asarray(prob), np.asarray(gt).astype(bool)
    if p.shape != g.shape:
        raise ValueError(f"probability map shape {p.shape} differs from ground truth {g.shape}")
    score = minmax_normalise(p)
    fg = np.sort(score[g])
    bg = np.sort(score[~g])
    # Pixels >= t: count from the right of each sorted array.
    tp = fg.size - np.searchsorted(fg, THRESHOLDS, side="left")
    fp = bg.size - np.searchsorted(bg, THRESHOLDS, side="left")
    tn = bg.size - fp
    n_gt = fg.size
    hit = tp > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        dice = np.where(hit, 2 * tp / (n_gt + tp + fp), 0.0)
        sens = np.where(hit, tp / max(n_gt, 1), 0.0)
        spec = np.where(hit, tn / np.maximum(tn + fp, 1), 0.0)
    return {"dice": dice, "sensitivity": sens, "specificity": spec}


def toolbox_scores(pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Mean over thresholds and images of the toolbox's Dice, sensitivity and specificity.

    Args:
        pairs: ``(probability map, ground truth)`` per image.

    Raises:
        ValueError: no image, or a shape mismatch.
    """
    curves = [toolbox_curves(p, g) for p, g in pairs]
    if not curves:
        raise ValueError("no image to score")
    return {k: float(np.mean([c[k] for c in curves])) for k in curves[0]}
