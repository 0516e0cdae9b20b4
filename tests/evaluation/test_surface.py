"""Surface metrics against brute force, analytic answers, medpy and MONAI, on synthetic
shapes and on real 8 mm-slice COVID-19 lesion masks (MosMedData)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from autojoint.evaluation.surface import (
    SURFACE_METRICS,
    surface_distances,
    surface_metrics,
    surface_voxels,
)
from tests.evaluation.surface_reference import (
    brute_directed,
    brute_surface,
    medpy_directed,
    medpy_hd95,
    monai_metrics,
    pooled_metrics,
)
from tests.shared_data import shared_data_or_skip

SPACING = (2.5, 0.8, 0.6)  # (z, y, x) mm, anisotropic like thick-slice CT


def _random_blobs(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Smoothed noise thresholded: irregular blobs, holes, and contact with the border."""
    field = ndimage.gaussian_filter(rng.random(shape), sigma=1.0)
    return field > np.quantile(field, rng.uniform(0.4, 0.8))


@pytest.mark.parametrize("seed", range(6))
def test_surface_voxels_match_brute_force(seed: int) -> None:
    mask = _random_blobs(np.random.default_rng(seed), (5, 7, 6))
    np.testing.assert_array_equal(surface_voxels(mask), brute_surface(mask))


@pytest.mark.parametrize("seed", range(8))
def test_metrics_match_all_pairs_brute_force(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    shape = (5, 8, 7)
    pred, ref = _random_blobs(rng, shape), _random_blobs(rng, shape)
    tolerance = float(rng.choice([0.5, 1.0, 2.5]))
    d = surface_distances(pred, ref, SPACING)
    d_pr, d_rp = brute_directed(pred, ref, SPACING), brute_directed(ref, pred, SPACING)
    # Both enumerate surface voxels in C order, so the arrays align element by element.
    np.testing.assert_allclose(d.pred_to_ref, d_pr, rtol=0, atol=1e-12)
    np.testing.assert_allclose(d.ref_to_pred, d_rp, rtol=0, atol=1e-12)
    got = surface_metrics(pred, ref, SPACING, tolerance_mm=tolerance)
    want = pooled_metrics(d_pr, d_rp, tolerance)
    for key in SURFACE_METRICS:
        assert got[key] == pytest.approx(want[key], abs=1e-12), key


def _cube(shape: tuple[int, int, int], start: int, n: int, axis: int) -> np.ndarray:
    """An n-voxel cube in the middle of the other axes, starting at ``start`` on ``axis``."""
    mask = np.zeros(shape, bool)
    box = [slice(2, 2 + n)] * 3
    box[axis] = slice(start, start + n)
    mask[tuple(box)] = True
    return mask


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_cubes_shifted_by_one_voxel_analytic(axis: int) -> None:
    """Cube B = cube A moved one voxel along the axis with the smallest spacing.

    Only A's leading face (n² voxels) and the interior of its trailing face ((n-2)²) are
    off B's surface, each by exactly one voxel step s; by symmetry the same for B. So with
    f = (n² + (n-2)²) / (n³ - (n-2)³): ASD = f s, RMSD = √f s, HD95 = s (f > 5 %),
    NSD = ASO = 1 - f below s and 1 from s on; Dice = (n-1)/n.
    """
    spacing = [2.0, 1.7, 1.9]
    spacing[axis] = 0.7
    n, shape = 6, (10, 10, 10)
    a, b = _cube(shape, 2, n, axis), _cube(shape, 3, n, axis)
    s = spacing[axis]
    f = (n**2 + (n - 2) ** 2) / (n**3 - (n - 2) ** 3)
    m = surface_metrics(b, a, spacing, tolerance_mm=0.5)
    assert m["asd"] == pytest.approx(f * s, rel=1e-12)
    assert m["rmsd"] == pytest.approx(math.sqrt(f) * s, rel=1e-12)
    assert m["hd95"] == pytest.approx(s, rel=1e-12)
    assert m["nsd"] == pytest.approx(1 - f, rel=1e-12)
    assert m["aso"] == pytest.approx(1 - f, rel=1e-12)
    m = surface_metrics(b, a, spacing, tolerance_mm=s)
    assert (m["nsd"], m["aso"]) == (1.0, 1.0)


def test_separated_cubes_analytic() -> None:
    """Cubes of side n with g empty slices between them along z (spacing s_z).

    Every surface voxel of either cube at depth k (0 = the face looking away, n-1 = the
    facing one) is (n + g - k) s_z from the other cube's facing face, which covers the same
    (y, x) square. Depths 0 and n-1 hold n² surface voxels, the others n² - (n-2)².
    """
    n, g, sz = 5, 2, 2.5
    spacing = (sz, 0.9, 0.8)
    shape = (2 * n + g + 2, n + 4, n + 4)
    a = _cube(shape, 1, n, 0)
    b = _cube(shape, 1 + n + g, n, 0)
    counts = [n**2 if k in (0, n - 1) else n**2 - (n - 2) ** 2 for k in range(n)]
    one_side = np.repeat([(n + g - k) * sz for k in range(n)], counts)
    d = np.concatenate([one_side, one_side])
    m = surface_metrics(a, b, spacing, tolerance_mm=(g + 1) * sz)
    assert m["asd"] == pytest.approx(d.mean(), rel=1e-12)
    assert m["rmsd"] == pytest.approx(np.sqrt((d**2).mean()), rel=1e-12)
    assert m["hd95"] == pytest.approx(np.percentile(d, 95), rel=1e-12)
    assert m["nsd"] == pytest.approx(n**2 / (n**3 - (n - 2) ** 3), rel=1e-12)
    assert m["aso"] == pytest.approx(m["nsd"], rel=1e-12)
    got = np.sort(surface_distances(a, b, spacing).pred_to_ref)
    np.testing.assert_allclose(got, np.sort(one_side), rtol=1e-12)


def test_concentric_spheres_distance_is_the_radius_gap() -> None:
    """Inner radius 4 mm, outer 7 mm on a 0.5 mm grid: every distance is 3 mm up to the
    voxelisation (half a voxel diagonal per surface); NSD at 1 mm is 0, at 4 mm 1."""
    h = 0.5
    z, y, x = np.indices((36, 36, 36)) * h - 17.5 * h
    r = np.sqrt(z**2 + y**2 + x**2)
    inner, outer = r <= 4.0, r <= 7.0
    d = surface_distances(inner, outer, (h, h, h))
    slack = math.sqrt(3) * h
    assert np.all(np.abs(d.pooled - 3.0) <= slack)
    m = surface_metrics(inner, outer, (h, h, h), tolerance_mm=1.0)
    assert m["asd"] == pytest.approx(3.0, abs=slack / 2)
    assert m["nsd"] == 0.0
    assert surface_metrics(inner, outer, (h, h, h), tolerance_mm=4.0)["nsd"] == 1.0


def test_empty_conventions() -> None:
    mask = _cube((8, 8, 8), 2, 3, 0)
    empty = np.zeros_like(mask)
    both = surface_metrics(empty, empty, SPACING)
    assert all(math.isnan(v) for v in both.values())
    for pred, ref in ((empty, mask), (mask, empty)):
        m = surface_metrics(pred, ref, SPACING)
        assert (m["nsd"], m["aso"]) == (0.0, 0.0)
        assert math.isnan(m["asd"]) and math.isnan(m["hd95"]) and math.isnan(m["rmsd"])
    d = surface_distances(mask, empty, SPACING)
    assert d.ref_to_pred.size == 0 and np.all(np.isinf(d.pred_to_ref))
    assert d.pred_to_ref.size == np.count_nonzero(brute_surface(mask))


def test_identical_masks_are_perfect_and_single_voxels_work() -> None:
    mask = _random_blobs(np.random.default_rng(3), (6, 9, 9))
    m = surface_metrics(mask, mask, SPACING, tolerance_mm=0.0)
    assert m == {"nsd": 1.0, "asd": 0.0, "hd95": 0.0, "rmsd": 0.0, "aso": 1.0}
    a, b = np.zeros((3, 4, 5), bool), np.zeros((3, 4, 5), bool)
    a[0, 0, 0] = b[2, 3, 4] = True
    expected = math.sqrt((2 * 2.5) ** 2 + (3 * 0.8) ** 2 + (4 * 0.6) ** 2)
    m = surface_metrics(a, b, SPACING)
    assert m["asd"] == m["hd95"] == m["rmsd"] == pytest.approx(expected)


def test_crop_does_not_change_distances() -> None:
    """The same masks placed inside a larger image, away from the border: same numbers."""
    rng = np.random.default_rng(11)
    pred, ref = _random_blobs(rng, (5, 6, 7)), _random_blobs(rng, (5, 6, 7))
    big_p, big_r = np.zeros((9, 12, 11), bool), np.zeros((9, 12, 11), bool)
    big_p[2:7, 3:9, 2:9], big_r[2:7, 3:9, 2:9] = pred, ref
    # Inside the big image, the former image border is no longer surface: compare with
    # the brute-force reference on the big image rather than with the small one.
    got = surface_metrics(big_p, big_r, SPACING)
    want = pooled_metrics(
        brute_directed(big_p, big_r, SPACING), brute_directed(big_r, big_p, SPACING), 1.0
    )
    for key in SURFACE_METRICS:
        assert got[key] == pytest.approx(want[key], abs=1e-12), key


@pytest.mark.parametrize(
    ("spacing", "tolerance", "match"),
    [((1.0, 1.0), 1.0, "entries"), ((1.0, 0.0, 1.0), 1.0, "positive"), (SPACING, -1.0, "tol")],
)
def test_bad_arguments_are_refused(spacing: tuple, tolerance: float, match: str) -> None:
    mask = np.ones((2, 2, 2), bool)
    with pytest.raises(ValueError, match=match):
        surface_metrics(mask, mask, spacing, tolerance_mm=tolerance)


# Real anisotropic masks ---------------------------------------------------------------

MOSMED_CASES = ("study_0255", "study_0262", "study_0270")


def _mosmed_roi(case: str) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Up to 12 x 48 x 48 voxels around the largest lesion of a MosMedData mask; (z, y, x) mm.

    Small enough that MONAI's KD-tree metrics stay quick; the crop keeps lesion edges, the
    cut through the lesion (surface at the ROI border) and the 8 mm slices.
    """
    path = shared_data_or_skip("mosmed_masks", "masks", f"{case}_mask.nii.gz")
    img = sitk.ReadImage(str(path))
    mask = sitk.GetArrayFromImage(img) > 0
    labels, _ = ndimage.label(mask)
    largest = labels == int(np.argmax(np.bincount(labels.ravel())[1:])) + 1
    centre = np.round(ndimage.center_of_mass(largest)).astype(int)
    box = tuple(
        slice(max(int(c) - h, 0), int(c) + h) for c, h in zip(centre, (6, 24, 24), strict=True)
    )
    spacing = tuple(float(s) for s in reversed(img.GetSpacing()))
    assert spacing[0] >= 5.0  # thick slices: the point of these cases
    return mask[box], spacing  # type: ignore[return-value]


def _perturbations(ref: np.ndarray) -> dict[str, np.ndarray]:
    """Plausible predictions: grown, shrunk, shifted in-plane, one slice off, noisy."""
    rng = np.random.default_rng(0)
    cross = ndimage.generate_binary_structure(3, 1)
    noisy = ref ^ (ndimage.binary_dilation(ref, cross) & (rng.random(ref.shape) < 0.3))
    return {
        "dilated": ndimage.binary_dilation(ref, cross, iterations=2),
        "eroded": ndimage.binary_erosion(ref, cross),
        "shift_xy": np.roll(ref, (2, -1), axis=(1, 2)),
        "shift_slice": np.roll(ref, 1, axis=0),
        "noisy": noisy,
    }


@pytest.mark.realdata
@pytest.mark.parametrize("case", MOSMED_CASES)
def test_real_masks_match_medpy_and_monai(case: str) -> None:
    """medpy's directed distances are the reference for every pooled metric at several
    tolerances; MONAI (a KD-tree, no distance transform) checks ASD, NSD and the directed
    HD95 once per prediction; medpy's own HD95 checks ours."""
    ref, spacing = _mosmed_roi(case)
    assert ref.any()
    for name, pred in _perturbations(ref).items():
        d = surface_distances(pred, ref, spacing)
        d_pr, d_rp = medpy_directed(pred, ref, spacing), medpy_directed(ref, pred, spacing)
        np.testing.assert_allclose(np.sort(d.pred_to_ref), np.sort(d_pr), rtol=0, atol=1e-9)
        np.testing.assert_allclose(np.sort(d.ref_to_pred), np.sort(d_rp), rtol=0, atol=1e-9)
        for tolerance in (1.0, 2.0, 8.0):
            m = surface_metrics(pred, ref, spacing, tolerance_mm=tolerance)
            want = pooled_metrics(d_pr, d_rp, tolerance)
            for key in SURFACE_METRICS:
                assert m[key] == pytest.approx(want[key], rel=1e-12, abs=1e-12), (name, key)
        assert m["hd95"] == pytest.approx(medpy_hd95(pred, ref, spacing), rel=1e-12), name
        m = surface_metrics(pred, ref, spacing, tolerance_mm=1.0)
        mo = monai_metrics(pred, ref, spacing, 1.0)
        # MONAI returns float32.
        assert m["asd"] == pytest.approx(mo["asd"], rel=1e-5), name
        assert m["nsd"] == pytest.approx(mo["nsd"], rel=1e-5), name
        # MONAI's HD95 convention (max of the directed 95th percentiles) from our distances.
        directed = max(np.percentile(d.pred_to_ref, 95), np.percentile(d.ref_to_pred, 95))
        assert directed == pytest.approx(mo["hd95_max_directed"], rel=1e-5), name


@pytest.mark.realdata
def test_real_mask_small_roi_matches_brute_force() -> None:
    """A slab of a real mask small enough for all-pairs distances, at its true spacing."""
    ref, spacing = _mosmed_roi(MOSMED_CASES[0])
    ref = ref[3:9, 15:33, 15:33]
    pred = np.roll(ref, 1, axis=2) | np.roll(ref, 1, axis=0)
    assert ref.any() and pred.any()
    d_pr, d_rp = brute_directed(pred, ref, spacing), brute_directed(ref, pred, spacing)
    got = surface_metrics(pred, ref, spacing, tolerance_mm=1.0)
    want = pooled_metrics(d_pr, d_rp, 1.0)
    for key in SURFACE_METRICS:
        assert got[key] == pytest.approx(want[key], abs=1e-12), key
