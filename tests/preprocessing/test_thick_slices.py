"""The thick-slice rule of ``autojoint.preprocessing.resample``: which axis, no overshoot
across it, real slices for label maps, and the rule inside case preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from skimage.transform import resize

from autojoint.io.image_io import ImageGeometry
from autojoint.planning.planner import plan_experiment
from autojoint.preprocessing import resample
from autojoint.preprocessing.preprocess import preprocess_arrays
from autojoint.preprocessing.resample import (
    nearest_indices,
    resample_image,
    resample_label,
    shape_for_spacing,
    thick_axis,
)
from tests.preprocessing.test_preprocessing import _tiny_fingerprint
from tests.shared_data import shared_data_or_skip
from tests.synthetic import make_case


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ((8.0, 0.7, 0.7), (2.75, 1.5, 1.5), 0),  # thick source
        ((1.0, 1.0, 1.0), (5.0, 1.0, 1.0), 0),  # thick target only
        ((2.5, 1.0, 1.0), (2.0, 1.0, 1.0), None),  # 2.5x: not thick
        ((3.0, 1.0, 1.0), (3.0, 1.0, 1.0), None),  # exactly the threshold: not thick
        ((1.0, 4.0, 1.0), (1.0, 1.0, 1.0), 1),  # any axis may be the thick one
        ((4.0, 4.0, 1.0), (4.0, 4.0, 1.0), None),  # two coarse axes: no single thick axis
    ],
)
def test_thick_axis_known_answers(old, new, expected) -> None:
    assert thick_axis(old, new) == expected


def test_nearest_indices_known_answers() -> None:
    assert nearest_indices(3, 9).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    # centres at -0.3, 0.1, 0.5, 0.9, 1.3 source voxels
    assert nearest_indices(2, 5).tolist() == [0, 0, 1, 1, 1]
    assert nearest_indices(6, 3).tolist() == [1, 3, 5]


def _bracket(source: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Min/max of the two source slices around each output slice (pixel centres)."""
    centres = (np.arange(size) + 0.5) * source.shape[0] / size - 0.5
    lo = np.clip(np.floor(centres), 0, source.shape[0] - 1).astype(int)
    hi = np.clip(lo + 1, 0, source.shape[0] - 1)
    return np.minimum(source[lo], source[hi]), np.maximum(source[lo], source[hi])


def test_thick_axis_never_leaves_the_range_of_its_two_slices() -> None:
    rng = np.random.default_rng(0)
    slabs = rng.normal(0, 300, (6, 12, 10)).astype(np.float32)  # harsh jumps between slabs
    spread = resample_image(slabs[None], (24, 12, 10))[0]  # the all-axes cubic
    lo, hi = _bracket(slabs, 24)
    assert (spread > hi + 1).any() or (spread < lo - 1).any()  # it does overshoot
    out = resample_image(slabs[None], (24, 12, 10), separate_axis=0)[0]
    assert np.all(out >= lo - 1e-3) and np.all(out <= hi + 1e-3)


def test_thick_axis_cubic_is_untouched_where_it_does_not_overshoot() -> None:
    """On a ramp along z the cubic stays between its slices, so the clip changes nothing:
    the rule gives the all-axes cubic, and a rising ramp stays rising."""
    z = np.arange(8, dtype=np.float32)[:, None, None] * np.ones((1, 5, 4), np.float32)
    out = resample_image(z[None] * 10, (32, 5, 4), separate_axis=0)[0]
    np.testing.assert_allclose(out, resample_image(z[None] * 10, (32, 5, 4))[0], atol=1e-4)
    assert np.all(np.diff(out[:, 2, 2]) >= 0)


def test_thick_axis_unchanged_equals_the_in_plane_spline() -> None:
    rng = np.random.default_rng(1)
    vol = rng.normal(size=(1, 4, 9, 11)).astype(np.float32)
    np.testing.assert_allclose(
        resample_image(vol, (4, 17, 6), separate_axis=0), resample_image(vol, (4, 17, 6)), atol=1e-5
    )


def test_thick_axis_shrinking_keeps_a_constant_and_the_shape() -> None:
    vol = np.full((2, 40, 8, 8), 7.5, np.float32)
    out = resample_image(vol, (5, 16, 16), separate_axis=0)
    assert out.shape == (2, 5, 16, 16)
    np.testing.assert_allclose(out, 7.5, atol=1e-4)


def test_label_across_a_growing_thick_axis_takes_real_slices_in_order() -> None:
    rng = np.random.default_rng(2)
    seg = rng.integers(0, 3, (5, 8, 8)).astype(np.uint8)
    out = resample_label(seg, (20, 8, 8), 3, separate_axis=0)
    assert out.shape == (20, 8, 8)
    for i, src in enumerate(nearest_indices(5, 20)):
        np.testing.assert_array_equal(out[i], seg[src])


def test_label_onto_thick_slices_matches_the_one_hot_blend() -> None:
    rng = np.random.default_rng(3)
    seg = rng.integers(0, 3, (20, 8, 8)).astype(np.uint8)
    np.testing.assert_array_equal(
        resample_label(seg, (5, 8, 8), 3, separate_axis=0), resample_label(seg, (5, 8, 8), 3)
    )


def test_preprocessing_a_thick_case_applies_the_rule() -> None:
    """An 8 mm case under a 2.5 mm plan: every preprocessed label slice is a real (cropped)
    slice of the input, and the image stays within its two slices' range."""
    plan = plan_experiment(
        _tiny_fingerprint(), memory_budget_gb=0.05, device_profile="cpu", max_features=16
    )
    img, seg = make_case(np.random.default_rng(4), "COVID-19", (8, 36, 36))
    spacing = (8.0, 0.8, 0.8)
    geo = ImageGeometry((8, 36, 36), spacing, (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    pre = preprocess_arrays("thick", img[None].astype(np.float32), geo, seg, plan)
    assert thick_axis(spacing, plan.target_spacing) == 0
    (z0, z1), (y0, y1), (x0, x1) = pre.bbox
    cropped = tuple(b - a for a, b in pre.bbox)
    expected = shape_for_spacing(cropped, spacing, plan.target_spacing)
    assert pre.seg is not None and pre.seg.shape == expected and expected[0] > cropped[0]
    in_plane = resample_label(seg[z0:z1, y0:y1, x0:x1], (cropped[0], *expected[1:]), 3)
    for i, src in enumerate(nearest_indices(cropped[0], expected[0])):
        np.testing.assert_array_equal(pre.seg[i], in_plane[src])


def test_real_mosmed_mask_there_and_back_keeps_its_shape() -> None:
    """A real 8 mm lesion mask to the CPU plan's grid and back keeps Dice > 0.9 (over the
    50 MosMed masks: mean 0.92, min 0.86; docs/preprocessing.md)."""
    path = shared_data_or_skip("mosmed_masks", "masks", "study_0255_mask.nii.gz")
    image = sitk.ReadImage(str(path))
    seg = (sitk.GetArrayFromImage(image) > 0).astype(np.uint8)
    spacing = tuple(reversed(image.GetSpacing()))
    target = (2.75, 1.51, 1.51)
    shape = shape_for_spacing(seg.shape, spacing, target)
    fine = resample_label(seg, shape, 2, separate_axis=thick_axis(spacing, target))
    back = resample_label(fine, seg.shape, 2, separate_axis=thick_axis(target, spacing))
    dice = 2 * np.logical_and(back, seg).sum() / (back.sum() + seg.sum())
    assert dice > 0.9


def _skimage_resize(volume: np.ndarray, new_shape: tuple[int, ...], order: int) -> np.ndarray:
    """The reference: skimage's N-D resize with the settings ``resample._resize`` mirrors."""
    shrinking = any(n < o for n, o in zip(new_shape, volume.shape, strict=True))
    return resize(
        volume, new_shape, order=order, mode="edge", anti_aliasing=shrinking, preserve_range=True
    ).astype(np.float32)


@pytest.mark.parametrize("order", [0, 1, 3])
@pytest.mark.parametrize(
    "new_shape",
    [
        (4, 14, 11),  # one axis shrinks
        (23, 14, 11),  # one axis grows
        (9, 5, 11),
        (9, 14, 30),
        (9, 6, 5),  # two axes shrink (the in-plane step)
        (20, 7, 25),  # grow, shrink, grow
        (3, 4, 5),  # everything shrinks (the whole-scan view)
        (1, 14, 11),  # down to one slice
    ],
)
def test_separable_resize_equals_skimage_nd_resize(new_shape: tuple[int, ...], order: int) -> None:
    """One axis at a time as matrix products gives skimage's N-D resize (spline, anti-
    aliasing, edge mode, clip to the input range) up to float32 rounding, edges included."""
    rng = np.random.default_rng(order * 100 + sum(new_shape))
    volume = (rng.standard_normal((9, 14, 11)) * 300).astype(np.float32)
    volume[0, 0, 0] = 3000.0  # a bright voxel at a corner: ringing and the clip at an edge
    fast = resample._resize(volume, new_shape, order)
    reference = _skimage_resize(volume, new_shape, order)
    assert fast.dtype == np.float32 and fast.flags.c_contiguous
    np.testing.assert_allclose(fast, reference, rtol=0, atol=2e-3)
    assert fast.min() >= volume.min() and fast.max() <= volume.max()


def test_separable_resize_of_a_2d_slice_equals_skimage() -> None:
    rng = np.random.default_rng(7)
    image = (rng.standard_normal((17, 13)) * 100).astype(np.float32)
    for new_shape in ((8, 30), (17, 5), (40, 40)):
        np.testing.assert_allclose(
            resample._resize(image, new_shape, 3),
            _skimage_resize(image, new_shape, 3),
            rtol=0,
            atol=1e-3,
        )


def test_resize_returns_a_new_array_and_refuses_an_empty_one() -> None:
    volume = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    volume.flags.writeable = False  # e.g. a memory-mapped case
    same = resample._resize(volume, (2, 3, 4), 3)
    assert same is not volume and same.flags.writeable
    np.testing.assert_array_equal(same, volume)
    grown = resample_image(volume[None], (6, 3, 4), separate_axis=0)  # thick axis alone
    assert grown.shape == (1, 6, 3, 4)
    with pytest.raises(ValueError, match="empty"):
        resample._resize(np.zeros((0, 3, 4), np.float32), (2, 3, 4), 3)
