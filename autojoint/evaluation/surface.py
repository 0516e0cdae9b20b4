"""Surface-distance metrics of two binary masks on an anisotropic voxel grid.

Conventions (written out with formulas in ``docs/evaluation.md``):

* The surface of a mask is the set of its voxels removed by one binary erosion with the
  6-connected cross (face neighbours); space outside the image counts as background, so a
  mask touching the image border has surface voxels there.
* Distances are Euclidean, in mm, between voxel centres, with the voxel spacing applied per
  axis: the distance from each surface voxel of one mask to the nearest surface voxel of the
  other comes from an exact Euclidean distance transform of the other surface's complement.
* Symmetric metrics pool both directed distance sets ``D = d(S_P -> S_R) ∪ d(S_R -> S_P)``
  (every surface voxel of either mask counts once): ASD = mean(D), RMSD = sqrt(mean(D²)),
  HD95 = 95th percentile of D with linear interpolation (medpy's convention; MONAI and
  DeepMind take the larger of the two directed 95th percentiles instead), NSD = fraction of
  D that is <= the tolerance (surface voxels counted, not area-weighted surfels; ties up to
  rounding count as within, see ``TIE_SLACK_MM``).
* ASO (average surface overlap, MultiR-Net) = the mean of the two directed surface overlaps
  at the tolerance: ½ (fraction of S_P within tolerance of S_R + fraction of S_R within
  tolerance of S_P). NSD weights the two directions by surface size; ASO weights them
  equally, so a small spurious prediction costs more under ASO.
* Empty masks: both empty -> every metric NaN (nothing to measure). Exactly one empty ->
  distance metrics (ASD, HD95, RMSD) NaN (no distance to an absent surface exists) and the
  overlap metrics NSD and ASO 0 (no surface voxel lies within tolerance of an absent surface).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

NAN = float("nan")

SURFACE_METRICS = ("nsd", "asd", "hd95", "rmsd", "aso")
"""Keys returned by :func:`surface_metrics`, in output order."""

TIE_SLACK_MM = 1e-9
"""A distance counts as within the tolerance when ``d <= tolerance + TIE_SLACK_MM``: a
distance that equals the tolerance mathematically (one 2.5 mm slice at 2.5 mm, the
0.6/0.8 mm diagonal at 1 mm) must not flip on floating-point rounding."""


@dataclass(frozen=True)
class SurfaceDistances:
    """Directed surface distances in mm of a prediction ``P`` and a reference ``R``.

    Attributes:
        pred_to_ref: one entry per surface voxel of ``P``: distance to the nearest
            surface voxel of ``R`` (empty when ``P`` is empty; ``inf`` when only ``R`` is).
        ref_to_pred: the same from every surface voxel of ``R`` to the surface of ``P``.
    """

    pred_to_ref: np.ndarray
    ref_to_pred: np.ndarray

    @property
    def pooled(self) -> np.ndarray:
        """Both directed sets together: what the symmetric metrics average over."""
        return np.concatenate([self.pred_to_ref, self.ref_to_pred])


def check_spacing(spacing: Sequence[float], ndim: int) -> tuple[float, ...]:
    """``spacing`` as a float tuple, refused unless it has one positive entry per axis."""
    sp = tuple(float(s) for s in spacing)
    if len(sp) != ndim:
        raise ValueError(f"spacing {sp} has {len(sp)} entries but the masks have {ndim} axes")
    if not all(math.isfinite(s) and s > 0 for s in sp):
        raise ValueError(f"spacing {sp} must be positive and finite (mm per voxel)")
    return sp


def check_tolerance(tolerance_mm: float) -> None:
    """Refuse a negative or non-finite NSD/ASO tolerance."""
    if not (math.isfinite(tolerance_mm) and tolerance_mm >= 0):
        raise ValueError(f"tolerance {tolerance_mm} mm must be a non-negative finite number")


def surface_voxels(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` removed by a 6-connected erosion (outside the image = background).

    Shape:
        mask: ``(Z, Y, X)`` (any number of axes); returns a bool array of the same shape.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return np.zeros_like(mask)
    cross = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=cross, border_value=0)


def bounding_box(mask: np.ndarray) -> tuple[slice, ...]:
    """Tight bounding box of the non-zero voxels (mask must not be empty)."""
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


def _directed(from_surface: np.ndarray, to_surface: np.ndarray, spacing: tuple) -> np.ndarray:
    """Distance (mm) from every voxel of ``from_surface`` to the nearest of ``to_surface``."""
    if not to_surface.any():
        return np.full(int(np.count_nonzero(from_surface)), np.inf)
    # EDT gives, for every non-zero voxel, the exact distance to the nearest zero voxel.
    dist = ndimage.distance_transform_edt(~to_surface, sampling=spacing)
    return np.asarray(dist[from_surface], dtype=np.float64)


def surface_distances(
    pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]
) -> SurfaceDistances:
    """Directed surface distances of two masks of equal shape.

    Both masks are cropped to the bounding box of their union first: every surface voxel
    and every nearest neighbour lies inside it, so the distances are unchanged and the
    distance transforms run on a fraction of the volume.

    Args:
        pred: predicted mask (non-zero = inside).
        ref: reference mask of the same shape.
        spacing: voxel size in mm per axis, in the array's axis order.

    Raises:
        ValueError: shapes differ or the spacing does not fit the masks.
    """
    p, r = np.asarray(pred).astype(bool), np.asarray(ref).astype(bool)
    if p.shape != r.shape:
        raise ValueError(f"prediction shape {p.shape} differs from reference shape {r.shape}")
    sp = check_spacing(spacing, p.ndim)
    union = p | r
    if not union.any():
        return SurfaceDistances(np.zeros(0), np.zeros(0))
    # No margin is needed: outside the box everything is background, which is exactly what
    # the erosion assumes beyond the crop's border.
    box = bounding_box(union)
    sp_, sr = surface_voxels(p[box]), surface_voxels(r[box])
    return SurfaceDistances(_directed(sp_, sr, sp), _directed(sr, sp_, sp))


def metrics_from_distances(d: SurfaceDistances, tolerance_mm: float) -> dict[str, float]:
    """ASD, HD95, RMSD, NSD and ASO from directed distances (see the module conventions)."""
    n_p, n_r = d.pred_to_ref.size, d.ref_to_pred.size
    if n_p == 0 and n_r == 0:
        return dict.fromkeys(SURFACE_METRICS, NAN)
    if n_p == 0 or n_r == 0:
        return {"nsd": 0.0, "asd": NAN, "hd95": NAN, "rmsd": NAN, "aso": 0.0}
    pooled = d.pooled
    limit = tolerance_mm + TIE_SLACK_MM
    within_p = int(np.count_nonzero(d.pred_to_ref <= limit))
    within_r = int(np.count_nonzero(d.ref_to_pred <= limit))
    return {
        "nsd": (within_p + within_r) / (n_p + n_r),
        "asd": float(pooled.mean()),
        "hd95": float(np.percentile(pooled, 95)),
        "rmsd": float(np.sqrt(np.mean(pooled**2))),
        "aso": 0.5 * (within_p / n_p + within_r / n_r),
    }


def surface_metrics(
    pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float], *, tolerance_mm: float = 1.0
) -> dict[str, float]:
    """``{"nsd", "asd", "hd95", "rmsd", "aso"}`` of two masks; distances in mm.

    Args:
        pred: predicted mask, ``(Z, Y, X)`` or any number of axes.
        ref: reference mask of the same shape.
        spacing: voxel size in mm per axis (same order as the array axes).
        tolerance_mm: NSD/ASO tolerance; a surface voxel within this distance of the other
            surface counts as overlapping (``<=``).

    Raises:
        ValueError: bad shapes, spacing or tolerance.
    """
    check_tolerance(tolerance_mm)
    return metrics_from_distances(surface_distances(pred, ref, spacing), tolerance_mm)
