"""Normalised surface Dice in the surfel convention of DeepMind's ``surface-distance``.

Our default NSD (:mod:`autojoint.evaluation.surface`) counts surface voxels. COVID-19 lesion
benchmarks instead weigh surface elements ("surfels") by their area; this module implements
that convention (written out in ``docs/evaluation.md``):

* Surfels live on the grid of voxel *corners*. Each corner sees a 2x2 (2D) or 2x2x2 (3D)
  neighbourhood of voxels, outside the image counting as background; its inside/outside
  pattern ("configuration") is encoded as a bit code. Configurations that are all inside or
  all outside carry no surface; every other one carries the piece of marching-squares/cubes
  surface (vertices at the midpoints of the cut voxel-centre edges) inside that cell, with
  its length (2D, mm) or area (3D, mm²) under the voxel spacing.
* Distances are Euclidean in mm between surfel positions (corner-grid points), spacing
  applied per axis, from an exact distance transform of the corner grid.
* ``nsd = (area of P's surfels within τ of R's surfels + area of R's surfels within τ of
  P's surfels) / (area of P + area of R)``; empty masks as in the voxel NSD.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from skimage import measure

from autojoint.evaluation.surface import (
    TIE_SLACK_MM,
    bounding_box,
    check_spacing,
    check_tolerance,
)


def _check_ndim(ndim: int) -> None:
    if ndim not in (2, 3):
        raise ValueError(f"surfel NSD needs 2D or 3D masks, got {ndim} axes")


@functools.cache
def _unit_area_vectors() -> np.ndarray:
    """Area vectors (normal x area) of the triangles of each 2x2x2 configuration, unit grid.

    Why this reproduces DeepMind's table: theirs holds, per configuration, the normals of the
    triangles of the classic marching cubes (Lorensen & Cline, 15 base cases, a
    configuration and its complement sharing one triangulation, so on an ambiguous face the
    inside corners of the smaller side stay apart). skimage's ``method="lorensen"`` is that
    algorithm; we triangulate the side with fewer inside corners (both sides give the same
    area when they tie at four). The tests compare the resulting NSD with MONAI's port of
    DeepMind's code on random masks that contain every configuration.

    Returns:
        ``(256, T, 3)`` array, zero-padded over triangles; bit ``b`` of a code is the voxel
        at ``np.unravel_index(b, (2, 2, 2))`` of the neighbourhood.
    """
    per_code: list[np.ndarray] = [np.zeros((0, 3))]
    for code in range(1, 255):
        cube = np.array([(code >> b) & 1 for b in range(8)], dtype=np.float64).reshape(2, 2, 2)
        if cube.sum() > 4:
            cube = 1.0 - cube
        verts, faces, _, _ = measure.marching_cubes(cube, 0.5, method="lorensen")
        tri = verts[faces]
        per_code.append(0.5 * np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]))
    per_code.append(np.zeros((0, 3)))
    out = np.zeros((256, max(len(v) for v in per_code), 3))
    for code, vectors in enumerate(per_code):
        out[code, : len(vectors)] = vectors
    return out


def _area_table_3d(spacing: tuple[float, ...]) -> np.ndarray:
    """Surfel area (mm²) per 2x2x2 code.

    Scaling the axes by ``s`` maps a triangle's area vector ``n`` to
    ``(s1 s2 n0, s0 s2 n1, s0 s1 n2)`` (the cofactor of ``diag(s)``), so one unit-grid
    triangulation serves every spacing exactly.
    """
    s0, s1, s2 = spacing
    cofactor = np.array([s1 * s2, s0 * s2, s0 * s1])
    return np.asarray(np.linalg.norm(_unit_area_vectors() * cofactor, axis=-1).sum(axis=-1))


def _length_table_2d(spacing: tuple[float, ...]) -> np.ndarray:
    """Contour length (mm) per 2x2 code, from the side with fewer inside pixels.

    One pixel on that side: a segment across the cell corner between two edge midpoints,
    ``½·hypot(s0, s1)``. Two pixels side by side along axis ``a``: a straight segment
    parallel to ``a`` of length ``s_a``. Two diagonal pixels (a saddle): they stay apart,
    two corner segments.
    """
    half_diagonal = 0.5 * math.hypot(*spacing)
    table = np.zeros(16)
    for code in range(1, 15):
        corners = [np.unravel_index(b, (2, 2)) for b in range(4) if (code >> b) & 1]
        if len(corners) > 2:
            corners = [np.unravel_index(b, (2, 2)) for b in range(4) if not (code >> b) & 1]
        if len(corners) == 1:
            table[code] = half_diagonal
            continue
        differ = [a for a in range(2) if corners[0][a] != corners[1][a]]
        table[code] = spacing[differ[0]] if len(differ) == 1 else 2 * half_diagonal
    return table


def surfel_area_table(spacing: Sequence[float]) -> np.ndarray:
    """Length (2D, mm) or area (3D, mm²) of the surfel of every neighbourhood code.

    Args:
        spacing: voxel size in mm per axis (2 or 3 entries, array axis order).

    Returns:
        ``(16,)`` or ``(256,)`` float64 array; codes 0 and all-ones carry 0.
    """
    _check_ndim(len(spacing))
    sp = check_spacing(spacing, len(spacing))
    return _length_table_2d(sp) if len(sp) == 2 else _area_table_3d(sp)


def neighbourhood_codes(mask: np.ndarray) -> np.ndarray:
    """Configuration code of the 2x2(x2) voxels around every voxel corner.

    Bit ``b`` is set when the voxel at offset ``np.unravel_index(b, (2,) * ndim)`` from the
    corner's lower neighbour is inside; outside the image is background.

    Shape:
        mask: ``(Y, X)`` or ``(Z, Y, X)``; returns uint8 of shape ``mask.shape + 1`` per axis.
    """
    mask = np.asarray(mask, dtype=bool)
    _check_ndim(mask.ndim)
    padded = np.pad(mask, 1)
    grid = tuple(n + 1 for n in mask.shape)
    codes = np.zeros(grid, dtype=np.uint8)
    for bit, offset in enumerate(itertools.product((0, 1), repeat=mask.ndim)):
        window = tuple(slice(o, o + n) for o, n in zip(offset, grid, strict=True))
        codes |= padded[window].astype(np.uint8) << bit
    return codes


def surfel_areas(mask: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Surfel length (2D, mm) or area (3D, mm²) at every voxel corner; 0 off the surface.

    Shape:
        mask: ``(Y, X)`` or ``(Z, Y, X)``; returns float64 of shape ``mask.shape + 1``.
    """
    mask = np.asarray(mask, dtype=bool)
    return surfel_area_table(check_spacing(spacing, mask.ndim))[neighbourhood_codes(mask)]


def _directed(
    from_areas: np.ndarray, to_areas: np.ndarray, spacing: tuple, limit: float
) -> tuple[float, float]:
    """Area of the surfels of ``from_areas`` within ``limit`` mm of one of ``to_areas``, and
    their total area.

    Both sums run over the same array of surfel areas in the same order, so identical
    masks give exactly 1, not 1 ± rounding.
    """
    is_surfel = from_areas > 0
    dist = ndimage.distance_transform_edt(to_areas == 0, sampling=spacing)[is_surfel]
    areas = from_areas[is_surfel]
    return float(np.where(dist <= limit, areas, 0.0).sum()), float(areas.sum())


def surfel_nsd(
    pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float], *, tolerance_mm: float = 1.0
) -> float:
    """Normalised surface Dice with area-weighted surfels (DeepMind's convention).

    Both masks are cropped to the bounding box of their union; the corner grid of the crop
    (one corner more per axis, outside = background) holds every surfel, and distances are
    translation invariant, so the result equals that on the full image.

    Args:
        pred: predicted mask, ``(Y, X)`` or ``(Z, Y, X)`` (non-zero = inside).
        ref: reference mask of the same shape.
        spacing: voxel size in mm per axis (array axis order).
        tolerance_mm: a surfel within this distance of the other surface counts (``<=``,
            ties up to :data:`~autojoint.evaluation.surface.TIE_SLACK_MM` inside).

    Returns:
        NSD in ``[0, 1]``; NaN when both masks are empty, 0 when exactly one is.

    Raises:
        ValueError: shapes differ, masks not 2D/3D, bad spacing or tolerance.
    """
    p, r = np.asarray(pred).astype(bool), np.asarray(ref).astype(bool)
    if p.shape != r.shape:
        raise ValueError(f"prediction shape {p.shape} differs from reference shape {r.shape}")
    _check_ndim(p.ndim)
    sp = check_spacing(spacing, p.ndim)
    check_tolerance(tolerance_mm)
    has_p, has_r = bool(p.any()), bool(r.any())
    if not (has_p or has_r):
        return math.nan
    if not (has_p and has_r):
        return 0.0
    box = bounding_box(p | r)
    table = surfel_area_table(sp)
    area_p = table[neighbourhood_codes(p[box])]
    area_r = table[neighbourhood_codes(r[box])]
    limit = tolerance_mm + TIE_SLACK_MM
    within_p, total_p = _directed(area_p, area_r, sp, limit)
    within_r, total_r = _directed(area_r, area_p, sp, limit)
    return (within_p + within_r) / (total_p + total_r)
