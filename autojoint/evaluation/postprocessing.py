"""Postprocessing of lesion masks: per lesion label, remove connected components smaller
than a volume threshold; and the choice of that threshold on cross-validation predictions.

Lesions of COVID-19 CT are many and scattered, so nnU-Net's "keep the largest component"
would delete true lesions; only small specks are removed, and only for a label where that
raised its Dice on the cross-validation data. Thresholds are volumes in mm³, so a rule
chosen on the preprocessed grid applies on any input grid. Components are 26-connected
(8-connected in 2D): voxels touching at a corner belong to one lesion.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

# Candidate thresholds: these quantiles of the predicted components' volumes of a label.
CANDIDATE_QUANTILES = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
# A threshold is kept only if the label's mean Dice rises by more than this.
MIN_GAIN = 1e-4


def _structure(ndim: int) -> np.ndarray:
    return ndimage.generate_binary_structure(ndim, ndim)


def remove_small_components(
    mask: np.ndarray, label: int, min_volume_mm3: float, voxel_volume_mm3: float
) -> np.ndarray:
    """A copy of ``mask`` whose components of ``label`` below ``min_volume_mm3`` became
    background (0); other labels untouched.

    Shape:
        ``mask`` any 2D or 3D integer array -> same shape and dtype.
    """
    out = np.array(mask, copy=True)
    components, num = ndimage.label(out == label, structure=_structure(out.ndim))
    if num == 0:
        return out
    sizes = np.bincount(components.ravel())[1:] * voxel_volume_mm3
    small = np.flatnonzero(sizes < min_volume_mm3) + 1
    out[np.isin(components, small)] = 0
    return out


def apply_postprocessing(
    mask: np.ndarray, rules: Mapping[int, float], voxel_volume_mm3: float
) -> np.ndarray:
    """:func:`remove_small_components` for every ``label: min_volume_mm3`` rule."""
    for label, threshold in rules.items():
        mask = remove_small_components(mask, label, threshold, voxel_volume_mm3)
    return mask


@dataclass(frozen=True)
class CaseComponents:
    """The predicted components of one label in one case, for fast threshold trials.

    Attributes:
        volumes: each component's volume (mm³).
        overlaps: each component's voxels inside the reference label.
        num_ref: the reference label's voxel count.
    """

    volumes: np.ndarray
    overlaps: np.ndarray
    num_ref: int


def case_components(
    pred: np.ndarray, ref: np.ndarray, label: int, voxel_volume_mm3: float
) -> CaseComponents:
    """The components of ``label`` in ``pred`` with their overlap with ``ref == label``."""
    components, num = ndimage.label(pred == label, structure=_structure(pred.ndim))
    flat = components.ravel()
    sizes = np.bincount(flat, minlength=num + 1)[1:]
    inside = np.bincount(flat, weights=(ref == label).ravel(), minlength=num + 1)[1:]
    return CaseComponents(
        sizes * voxel_volume_mm3, inside.astype(np.int64), int(np.sum(ref == label))
    )


def dice_after_removal(case: CaseComponents, min_volume_mm3: float, voxel_mm3: float) -> float:
    """The case's Dice of the label once components below the threshold are removed; a
    correct empty prediction (both empty) scores 1."""
    kept = case.volumes >= min_volume_mm3
    tp = float(case.overlaps[kept].sum())
    num_pred = float(case.volumes[kept].sum()) / voxel_mm3
    denominator = num_pred + case.num_ref
    return 1.0 if denominator == 0 else 2.0 * tp / denominator


@dataclass(frozen=True)
class ThresholdChoice:
    """The outcome for one label: the chosen threshold (None: no postprocessing helped),
    the mean Dice without and with it, and the thresholds tried."""

    threshold_mm3: float | None
    dice_before: float
    dice_after: float
    candidates: tuple[float, ...]


def choose_threshold(
    cases: Sequence[CaseComponents], voxel_volume_mm3: float, *, min_gain: float = MIN_GAIN
) -> ThresholdChoice:
    """The component-volume threshold that maximises the label's mean Dice over
    ``cases``, kept only when it beats no removal by more than ``min_gain``.

    Candidates: the :data:`CANDIDATE_QUANTILES` of the predicted components' volumes,
    each nudged just above that volume so the component of that size is removed too.
    Ties go to the smaller threshold (fewer voxels removed).
    """
    volumes = np.concatenate([c.volumes for c in cases]) if cases else np.zeros(0)

    def mean_dice(threshold: float) -> float:
        return float(np.mean([dice_after_removal(c, threshold, voxel_volume_mm3) for c in cases]))

    before = mean_dice(0.0) if cases else math.nan
    if volumes.size == 0:
        return ThresholdChoice(None, before, before, ())
    quantiles = np.quantile(volumes, CANDIDATE_QUANTILES, method="lower")
    candidates = tuple(sorted({float(q) * (1 + 1e-6) + 1e-9 for q in quantiles}))
    scores = [mean_dice(t) for t in candidates]
    best = int(np.argmax(scores))  # the first (smallest) of equal maxima
    if scores[best] > before + min_gain:
        return ThresholdChoice(candidates[best], before, scores[best], candidates)
    return ThresholdChoice(None, before, before, candidates)
