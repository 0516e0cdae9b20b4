"""Surfel (area-weighted) NSD against MONAI's port of DeepMind's surface-distance and
against answers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from autojoint.evaluation.surface import surface_metrics
from autojoint.evaluation.surfels import (
    neighbourhood_codes,
    surfel_area_table,
    surfel_areas,
    surfel_nsd,
)
from tests.evaluation.surface_reference import monai_surfel_nsd
from tests.evaluation.test_surface import MOSMED_CASES, _mosmed_roi, _perturbations

# Spacings with tolerances that no grid distance equals: MONAI counts d <= τ without our
# 1e-9 mm tie slack, so a tie (0.6/0.8 mm diagonal at 1 mm) would differ by design. On the
# isotropic 1 mm grid the ties at 1 and 2 mm are exact in floating point and agree.
SPACINGS = {
    2: [((1.0, 1.0), (0.0, 1.0, 1.5, 2.0)), ((0.8, 0.6), (0.0, 0.5, 1.3, 2.9))],
    3: [
        ((1.0, 1.0, 1.0), (0.0, 1.0, 1.5, 2.0)),
        ((2.5, 0.8, 0.6), (0.0, 0.5, 1.3, 2.9)),
        ((0.7, 3.1, 1.3), (0.0, 0.5, 1.3, 2.9)),
    ],
}


def _ellipsoid(shape: tuple[int, ...], centre: tuple[float, ...], radii: tuple[float, ...]):
    grid = np.indices(shape, dtype=np.float64)
    dist = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii, strict=True))
    return dist < 1.0


def _pair(kind: str, ndim: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two masks: pure noise (every configuration), smooth blobs touching the border,
    overlapping ellipsoids, or a square and the same square moved by one voxel."""
    shape = (12, 12, 12) if ndim == 3 else (30, 30)
    if kind == "noise":
        return rng.random(shape) > 0.5, rng.random(shape) > 0.5
    if kind == "blobs":
        fields = [ndimage.gaussian_filter(rng.random(shape), 1.0) for _ in range(2)]
        return fields[0] > np.quantile(fields[0], 0.55), fields[1] > np.quantile(fields[1], 0.6)
    if kind == "ellipsoids":
        centre = tuple(n / 2 for n in shape)
        radii = tuple(n / 3 for n in shape)
        moved = tuple(c + rng.uniform(-1.5, 1.5) for c in centre)
        return _ellipsoid(shape, centre, radii), _ellipsoid(shape, moved, radii[::-1])
    ref = np.zeros(shape, bool)
    ref[(slice(3, 8),) * ndim] = True
    return np.roll(ref, 1, axis=ndim - 1), ref


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("kind", ["noise", "blobs", "ellipsoids", "shifted"])
def test_matches_monai_subvoxel_nsd(kind: str, ndim: int) -> None:
    rng = np.random.default_rng(7 * ndim + len(kind))
    pred, ref = _pair(kind, ndim, rng)
    for spacing, tolerances in SPACINGS[ndim]:
        for tolerance in tolerances:
            got = surfel_nsd(pred, ref, spacing, tolerance_mm=tolerance)
            want = monai_surfel_nsd(pred, ref, spacing, tolerance)
            assert got == pytest.approx(want, abs=1e-6), (spacing, tolerance)


@pytest.mark.realdata
@pytest.mark.parametrize("case", MOSMED_CASES)
def test_real_masks_match_monai_subvoxel_nsd(case: str) -> None:
    """MosMedData crops (8 mm slices) and plausible predictions: where the conventions
    matter most, area-weighted and voxel-counted NSD differ."""
    ref, spacing = _mosmed_roi(case)
    for name, pred in _perturbations(ref).items():
        for tolerance in (1.0, 2.0, 8.0):
            got = surfel_nsd(pred, ref, spacing, tolerance_mm=tolerance)
            want = monai_surfel_nsd(pred, ref, spacing, tolerance)
            assert got == pytest.approx(want, abs=1e-6), (name, tolerance)


def test_noise_exercises_every_configuration() -> None:
    """The 3D noise pair of the MONAI test holds all 256 codes, so the whole area table
    is checked against MONAI's (not only the common configurations)."""
    pred, ref = _pair("noise", 3, np.random.default_rng(7 * 3 + len("noise")))
    assert np.unique(neighbourhood_codes(pred)).size == 256
    assert np.unique(neighbourhood_codes(ref)).size == 256


def test_single_voxel_and_pixel_areas() -> None:
    """One voxel: 8 corner triangles with vertices at the half-spacings, together
    sqrt((s1 s2)² + (s0 s2)² + (s0 s1)²). One pixel: a diamond, 4 · ½ hypot(s0, s1)."""
    s0, s1, s2 = 2.5, 0.8, 0.6
    voxel = np.ones((1, 1, 1), bool)
    total = surfel_areas(voxel, (s0, s1, s2)).sum()
    assert total == pytest.approx(math.sqrt((s1 * s2) ** 2 + (s0 * s2) ** 2 + (s0 * s1) ** 2))
    assert surfel_areas(np.ones((1, 1), bool), (s0, s1)).sum() == pytest.approx(
        2 * math.hypot(s0, s1)
    )
    for table in (surfel_area_table((s0, s1)), surfel_area_table((s0, s1, s2))):
        assert table[0] == 0 and table[-1] == 0 and np.all(table[1:-1] > 0)


def _square_and_shift() -> tuple[np.ndarray, np.ndarray]:
    ref = np.zeros((5, 6), bool)
    ref[1:4, 1:4] = True
    return np.roll(ref, 1, axis=1), ref


def test_shifted_square_by_hand() -> None:
    """R = 3x3 pixels (rows 1-3, cols 1-3), P = R moved one column right; 1 mm pixels.

    Corner (i, j) sits between pixel rows i-1, i and columns j-1, j. R's surfels: the four
    outline corners (1,1), (1,4), (4,1), (4,4), each one inside pixel -> a cut-corner
    segment d = ½√2; the eight other outline corners, two inside pixels -> a straight 1 mm
    segment. |R| = 8 + 4d, and |P| the same (columns + 1).
    τ = 0: P's surfels on R's surfel positions are (1,2) [d], (1,3), (1,4) [1 each] and the
    same on row 4: 2(2 + d); by symmetry the same for R. NSD = 4(2 + d) / (2(8 + 4d)) = ½.
    τ = 1 mm: every other surfel of P is one column (1 mm) from one of R's, e.g.
    (2,2) -> (2,1), (1,5) -> (1,4). NSD = 1.
    """
    pred, ref = _square_and_shift()
    assert surfel_nsd(pred, ref, (1.0, 1.0), tolerance_mm=0.0) == pytest.approx(0.5)
    assert surfel_nsd(pred, ref, (1.0, 1.0), tolerance_mm=0.5) == pytest.approx(0.5)
    assert surfel_nsd(pred, ref, (1.0, 1.0), tolerance_mm=1.0) == pytest.approx(1.0)


def test_differs_from_voxel_count_nsd_by_hand() -> None:
    """The same squares with 1 mm rows and 3 mm columns, τ = 0.5 mm (no non-zero distance
    is that small, so only coinciding elements count).

    Surfels: segments parallel to the columns' axis (rows 1 and 4) are 3 mm long, those
    parallel to the rows' axis 1 mm, corners d = ½√10. |P| = |R| = 4d + 4·3 + 4·1.
    Coinciding surfels of P: the corner (1,2) and the 3 mm segments (1,3), (1,4), and the
    same on row 4: 2(d + 6). Surfel NSD = 4(d + 6) / (2(4d + 16)) = (d + 6) / (2d + 8)
    ≈ 0.679: the long edges that coincide weigh more.
    Voxel NSD: 8 surface pixels each, 4 of P's on R's surface (rows 1-3 of columns 2-3
    minus the two centres) and vice versa, all others ≥ 1 mm away: 8 / 16 = ½.
    """
    pred, ref = _square_and_shift()
    spacing = (1.0, 3.0)
    d = 0.5 * math.sqrt(10.0)
    got = surfel_nsd(pred, ref, spacing, tolerance_mm=0.5)
    assert got == pytest.approx((d + 6) / (2 * d + 8))
    assert surface_metrics(pred, ref, spacing, tolerance_mm=0.5)["nsd"] == pytest.approx(0.5)


@pytest.mark.parametrize("spacing", [(0.8, 0.6), (2.5, 0.8, 0.6)])
def test_identical_far_apart_and_empty(spacing: tuple[float, ...]) -> None:
    shape = (4, 40, 40)[-len(spacing) :]
    a = np.zeros(shape, bool)
    a[(slice(1, 3),) * (len(shape) - 2) + (slice(2, 9), slice(3, 7))] = True
    far = np.roll(a, 25, axis=-1)
    empty = np.zeros(shape, bool)
    assert surfel_nsd(a, a, spacing, tolerance_mm=0.0) == 1.0
    assert surfel_nsd(a, far, spacing, tolerance_mm=5.0) == 0.0
    assert math.isnan(surfel_nsd(empty, empty, spacing))
    assert surfel_nsd(a, empty, spacing) == 0.0
    assert surfel_nsd(empty, a, spacing) == 0.0


def test_crop_does_not_change_the_value() -> None:
    """Masks touching the border and the same masks padded with background agree."""
    rng = np.random.default_rng(3)
    pred, ref = _pair("blobs", 3, rng)
    spacing = (2.5, 0.8, 0.6)
    got = surfel_nsd(pred, ref, spacing, tolerance_mm=1.3)
    padded = surfel_nsd(np.pad(pred, 3), np.pad(ref, 3), spacing, tolerance_mm=1.3)
    assert got == pytest.approx(padded, abs=1e-12)


def test_refuses_bad_inputs() -> None:
    a = np.ones((3, 3), bool)
    with pytest.raises(ValueError, match="differs"):
        surfel_nsd(a, np.ones((3, 4), bool), (1.0, 1.0))
    with pytest.raises(ValueError, match="2D or 3D"):
        surfel_nsd(np.ones((2, 2, 2, 2)), np.ones((2, 2, 2, 2)), (1.0,) * 4)
    with pytest.raises(ValueError, match="spacing"):
        surfel_nsd(a, a, (1.0, 0.0))
    with pytest.raises(ValueError, match="tolerance"):
        surfel_nsd(a, a, (1.0, 1.0), tolerance_mm=-1.0)
