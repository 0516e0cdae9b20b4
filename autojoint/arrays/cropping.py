"""Crop a scan to the body: the air around it carries no information and costs compute."""

from __future__ import annotations

import numpy as np

# HU above which a voxel is body, not air. Lungs (about -850 HU) lie inside the body
# wall, so the body's bounding box still contains them.
CT_AIR_THRESHOLD_HU = -500.0

BBox = tuple[tuple[int, int], ...]


def body_mask(data: np.ndarray, *, is_ct: bool) -> np.ndarray:
    """Voxels that belong to the body (CT: above the air threshold; else non-zero).

    Shape:
        data: ``(C, Z, Y, X)``; returns ``(Z, Y, X)`` bool.
    """
    if is_ct:
        return np.any(data > CT_AIR_THRESHOLD_HU, axis=0)
    return np.any(data != 0, axis=0)


def bbox_of(mask: np.ndarray) -> BBox:
    """Tight bounding box ``((z0, z1), (y0, y1), (x0, x1))``, half-open; whole array if empty."""
    if not mask.any():
        return tuple((0, s) for s in mask.shape)
    out = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        nz = np.flatnonzero(mask.any(axis=other))
        out.append((int(nz[0]), int(nz[-1]) + 1))
    return tuple(out)


def crop(array: np.ndarray, bbox: BBox) -> np.ndarray:
    """Crop the trailing spatial axes of ``array`` to ``bbox`` (leading axes kept)."""
    lead = (slice(None),) * (array.ndim - len(bbox))
    return array[lead + tuple(slice(a, b) for a, b in bbox)]


def uncrop(
    array: np.ndarray, bbox: BBox, full_shape: tuple[int, ...], fill: float = 0
) -> np.ndarray:
    """Inverse of :func:`crop` for the spatial axes: paste into a ``full_shape`` array."""
    lead = array.shape[: array.ndim - len(bbox)]
    out = np.full(lead + tuple(full_shape), fill, dtype=array.dtype)
    out[(slice(None),) * len(lead) + tuple(slice(a, b) for a, b in bbox)] = array
    return out
