"""Do evidence maps point at lesions? One number per case for the explanations.

MultiR-Net reports that its Grad-CAM maps agree with the lesion masks; this makes that
checkable: the *lesion contrast* of an evidence map is the mean evidence inside the
reference lesions divided by the mean evidence in the rest of a region (the lung). Above 1
the map concentrates on lesions; 1 is no preference. The task-aware loss (docs/methods.md)
pulls the CAM towards the lesion maps, so for a model trained with it the contrast is the
optimised quantity; the pointing
game (:func:`evidence_peak_in_lesion`) and the deletion curve (:func:`deletion_curve`) are
not trained on.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike


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

    An evidence metric that no loss optimises directly (the task-aware loss pulls whole maps
    towards the lesion map, not their peak), so it can judge that loss without favouring
    it.
    Ties: the first maximal voxel in C order.

    Raises:
        ValueError: shapes differ.
    """
    if evidence.shape != lesion.shape:
        raise ValueError(f"evidence {evidence.shape} and lesion {lesion.shape} shapes must match.")
    return bool(lesion.reshape(-1)[int(np.argmax(evidence))])


def deletion_curve(
    image: np.ndarray,
    evidence: np.ndarray,
    region: np.ndarray,
    fractions: Sequence[float],
    score: Callable[[np.ndarray], np.ndarray],
    *,
    fill: float,
) -> np.ndarray:
    """Score of ``image`` after deleting the ``fractions`` of ``region``'s voxels that carry
    the most evidence (the deletion metric of Petsiuk et al. 2018, RISE).

    A faithful evidence map names the voxels the decision rests on: deleting them first
    lowers the score faster than deleting random ones (pass a random ``evidence`` map for
    that baseline). No loss is trained on this, unlike the lesion contrast that the
    task-aware loss optimises. Deleted voxels are set to ``fill`` in every channel (e.g. the
    median of the region: healthy lung); ties in the evidence go to the first voxel in C
    order.

    Args:
        image: ``(C, *spatial)``, not modified.
        evidence: ``spatial``; signed maps are fine (only the order counts).
        region: ``spatial`` bool, the voxels that may be deleted (e.g. the lung).
        fractions: shares of the region in [0, 1]; ``round(f * n)`` voxels each.
        score: batch ``(N, C, *spatial)`` -> ``(N,)`` scores (e.g. the probability of the
            class predicted on the intact image), called once with every fraction.
        fill: the value of a deleted voxel.

    Returns:
        ``(len(fractions),)`` scores, in the order of ``fractions``.

    Raises:
        ValueError: shapes differ, or a fraction lies outside [0, 1].

    Shape:
        image ``(C, Z, Y, X)`` (or ``(C, Y, X)``), evidence and region ``(Z, Y, X)``.
    """
    if evidence.shape != image.shape[1:] or region.shape != evidence.shape:
        raise ValueError(
            f"image {image.shape}, evidence {evidence.shape} and region {region.shape}: "
            "evidence and region must match the image's spatial shape."
        )
    if any(not 0.0 <= f <= 1.0 for f in fractions):
        raise ValueError(f"deletion fractions must lie in [0, 1], got {list(fractions)}.")
    voxels = np.flatnonzero(region.reshape(-1))
    ranked = voxels[np.argsort(-evidence.reshape(-1)[voxels], kind="stable")]
    flat = np.repeat(image.reshape(1, image.shape[0], -1), len(fractions), axis=0)
    for i, f in enumerate(fractions):
        flat[i][:, ranked[: round(f * len(ranked))]] = fill
    batch = flat.reshape(len(fractions), *image.shape)
    return np.asarray(score(batch), dtype=np.float64).reshape(len(fractions))


def deletion_area(fractions: ArrayLike, scores: ArrayLike) -> float:
    """Area under a deletion curve by the trapezoid rule, divided by the fraction range, so
    a constant score s has area s. Lower: the score falls sooner.

    Raises:
        ValueError: fewer than two points, lengths differ, or fractions not increasing.
    """
    f = np.asarray(fractions, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    if f.ndim != 1 or f.shape != s.shape or len(f) < 2 or np.any(np.diff(f) <= 0):
        raise ValueError(
            f"a deletion curve needs >= 2 increasing fractions with one score each, got "
            f"{f.tolist()} and {s.tolist()}."
        )
    return float(np.sum((s[1:] + s[:-1]) * np.diff(f)) / 2.0 / (f[-1] - f[0]))
