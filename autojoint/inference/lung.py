"""Lesion volumes and a simple threshold lung estimate for the lung-involvement fraction.

The lung estimate is deliberately plain (thresholds and connected components, no model):
it only has to give the denominator of "lesion volume / lung volume" a sensible size.

Rule (documented in docs/prediction.md):
  1. body = largest 3D component of voxels above -500 HU;
  2. in every axial slice, the body's holes are filled; dark voxels (< -400 HU) inside the
     filled body are lung candidates (air outside the body touches the slice border and is
     excluded; the trachea is included, the gut gas mostly removed by step 3);
  3. keep candidate 3D components of at least 10% of the largest one (both lungs);
  4. lung = those components united with the predicted lesions (consolidation is dense and
     would otherwise be missing from its own lung).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy import ndimage

from autojoint.io.image_io import ImageGeometry

BODY_THRESHOLD_HU = -500.0
LUNG_THRESHOLD_HU = -400.0
MIN_COMPONENT_FRACTION = 0.1


def voxel_volume_ml(geometry: ImageGeometry) -> float:
    """Volume of one voxel in millilitres (spacing in mm; 1 ml = 1000 mm^3)."""
    return float(np.prod(geometry.spacing)) / 1000.0


def axial_axis(geometry: ImageGeometry) -> int:
    """Array axis ``(Z, Y, X)`` closest to the patient's head-feet (physical z) direction.

    ITK's direction matrix is row-major with columns = image axes ``(x, y, z)``; the array
    axis of image axis ``i`` is ``2 - i``.
    """
    d = np.asarray(geometry.direction, dtype=float).reshape(3, 3)
    image_axis = int(np.argmax(np.abs(d[2, :])))
    return 2 - image_axis


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    return labels == int(np.argmax(sizes)) + 1


def _fill_slices(mask: np.ndarray, axis: int) -> np.ndarray:
    moved = np.moveaxis(mask, axis, 0)
    filled = np.stack([ndimage.binary_fill_holes(s) for s in moved])
    return np.moveaxis(filled, 0, axis)


def estimate_lung_mask(ct: np.ndarray, geometry: ImageGeometry) -> np.ndarray:
    """Threshold lung estimate on the input grid (steps 1-3 of the module rule).

    Shape:
        ct ``(Z, Y, X)`` in HU -> ``(Z, Y, X)`` bool.
    """
    body = _largest_component(ct > BODY_THRESHOLD_HU)
    filled = _fill_slices(body, axial_axis(geometry))
    candidates = filled & (ct < LUNG_THRESHOLD_HU)
    labels, n = ndimage.label(candidates)
    if n == 0:
        return candidates
    sizes = np.bincount(labels.ravel())[1:]
    keep = np.flatnonzero(sizes >= MIN_COMPONENT_FRACTION * sizes.max()) + 1
    return np.isin(labels, keep)


def lesion_volumes(
    mask: np.ndarray,
    geometry: ImageGeometry,
    labels: Mapping[str, int],
    ct: np.ndarray | None,
) -> dict[str, float | None]:
    """Volumes (ml) per lesion label and in total, lung volume and lung involvement.

    Args:
        mask: predicted label map on the input grid.
        geometry: its grid.
        labels: label name -> value (background = 0 is skipped).
        ct: the CT in HU on the same grid, or None when the scan is not CT (then the lung
            volume and involvement are None).

    Returns:
        ``{"volume_ml_<label>": ..., "volume_ml_lesion": ..., "lung_volume_ml": ...,
        "lung_involvement": ...}``; involvement = lesion / lung volume in [0, 1].
    """
    ml = voxel_volume_ml(geometry)
    out: dict[str, float | None] = {}
    for name, value in labels.items():
        if value > 0:
            out[f"volume_ml_{name}"] = float(np.count_nonzero(mask == value)) * ml
    lesion = mask > 0
    lesion_ml = float(np.count_nonzero(lesion)) * ml
    out["volume_ml_lesion"] = lesion_ml
    if ct is None:
        out["lung_volume_ml"] = out["lung_involvement"] = None
        return out
    lung = estimate_lung_mask(ct, geometry) | lesion
    lung_ml = float(np.count_nonzero(lung)) * ml
    out["lung_volume_ml"] = lung_ml
    out["lung_involvement"] = lesion_ml / lung_ml if lung_ml > 0 else None
    return out
