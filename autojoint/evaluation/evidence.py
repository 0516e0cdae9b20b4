"""Do evidence maps point at lesions? One number per case for the explanations.

MultiR-Net reports that its Grad-CAM maps agree with the lesion masks; this makes that
checkable: the *lesion contrast* of an evidence map is the mean evidence inside the
reference lesions divided by the mean evidence in the rest of a region (the lung). Above 1
the map concentrates on lesions; 1 is no preference.
"""

from __future__ import annotations

import math

import numpy as np


def evidence_lesion_contrast(
    evidence: np.ndarray, lesion: np.ndarray, region: np.ndarray | None = None
) -> float:
    """mean(evidence | lesion) / mean(evidence | region and not lesion).

    Args:
        evidence: non-negative map; lesion, region: boolean masks of the same shape
            (``region`` default: everywhere).

    Returns:
        The ratio; NaN when there is no lesion voxel, no voxel outside the lesions, or no
        evidence outside them (the ratio is undefined).
    """
    if evidence.shape != lesion.shape or (region is not None and region.shape != lesion.shape):
        raise ValueError(
            f"evidence {evidence.shape}, lesion {lesion.shape} and region shapes must match."
        )
    inside = lesion.astype(bool)
    outside = ~inside if region is None else region.astype(bool) & ~inside
    if not inside.any() or not outside.any():
        return math.nan
    rest = float(evidence[outside].mean())
    if rest <= 0:
        return math.nan
    return float(evidence[inside].mean()) / rest


def evidence_peak_in_lesion(evidence: np.ndarray, lesion: np.ndarray) -> bool:
    """Does the evidence map's maximum lie inside a reference lesion (the "pointing game")?

    An evidence metric that no loss optimises directly (eq. 10 pulls whole maps towards the
    lesion map, not their peak), so it can judge the task-aware loss without favouring it.
    Ties: the first maximal voxel in C order.

    Raises:
        ValueError: shapes differ.
    """
    if evidence.shape != lesion.shape:
        raise ValueError(f"evidence {evidence.shape} and lesion {lesion.shape} shapes must match.")
    return bool(lesion.reshape(-1)[int(np.argmax(evidence))])
