"""Lesion volumes and the lung estimate on the input grid: known answers on synthetic chests."""

from __future__ import annotations

import numpy as np
import pytest

from autojoint.inference.lung import (
    anatomical_order,
    axial_axis,
    estimate_lung_mask,
    inplane_stride,
    lesion_volumes,
)
from autojoint.io.image_io import ImageGeometry
from autojoint.preprocessing.lung_mask import lung_mask
from tests.synthetic import LABELS


def _geometry(shape, spacing=(5.0, 1.5, 1.5), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)):
    return ImageGeometry(
        tuple(shape), tuple(spacing), (0.0, 0.0, 0.0), tuple(map(float, direction))
    )


def _chest(shape=(12, 40, 40)) -> tuple[np.ndarray, np.ndarray]:
    """Air, a body ellipse (40 HU) holding two lung ellipses (-850 HU), gas in the 'gut'
    (one dark voxel inside the body). Returns (ct, lungs). At the default 5 x 1.5 x 1.5 mm
    each lung holds about 19 ml, above the lung mask's 5 ml minimum."""
    z, y, x = np.indices(shape)
    ct = np.full(shape, -1000.0, np.float32)
    body = ((y - 20) / 17) ** 2 + ((x - 20) / 18) ** 2 < 1
    ct[body] = 40.0
    left = ((y - 18) / 9) ** 2 + ((x - 12) / 5) ** 2 < 1
    right = ((y - 18) / 9) ** 2 + ((x - 28) / 5) ** 2 < 1
    lungs = left | right
    ct[lungs] = -850.0
    ct[(z == 6) & (y == 33) & (x == 20)] = -900.0  # one voxel of gut gas
    return ct, lungs


def test_lung_estimate_finds_both_lungs_and_nothing_else() -> None:
    ct, lungs = _chest()
    estimate = estimate_lung_mask(ct, _geometry(ct.shape))
    np.testing.assert_array_equal(estimate, lungs)


def test_lung_estimate_follows_the_axial_axis() -> None:
    """The same chest stored with the head-feet axis as array axis 2: same lungs."""
    ct, lungs = _chest()
    moved = np.ascontiguousarray(np.moveaxis(ct, 0, 2))
    # array axis 2 = image axis x; make image x the physical head-feet direction.
    geo = _geometry(moved.shape, (1.5, 1.5, 5.0), (0, 0, 1, 0, 1, 0, 1, 0, 0))
    assert axial_axis(geo) == 2
    np.testing.assert_array_equal(estimate_lung_mask(moved, geo), np.moveaxis(lungs, 0, 2))


@pytest.mark.parametrize(
    "direction,axis",
    [
        ((1, 0, 0, 0, 1, 0, 0, 0, 1), 0),
        ((-1, 0, 0, 0, -1, 0, 0, 0, 1), 0),
        ((1, 0, 0, 0, 0, 1, 0, -1, 0), 1),  # coronal slices: image y runs head-feet
    ],
)
def test_axial_axis(direction: tuple, axis: int) -> None:
    assert axial_axis(_geometry((4, 5, 6), direction=direction)) == axis


def test_volumes_known_answer() -> None:
    ct, lungs = _chest()
    mask = np.zeros(ct.shape, np.uint8)
    mask[5, 16:18, 10:13] = 1  # 6 voxels of ground glass inside the left lung
    mask[6, 18, 27:29] = 2  # 2 voxels of consolidation
    ct[mask == 2] = 30.0  # dense: not dark, still lung through the lesion rule
    geo = _geometry(ct.shape)
    voxel_ml = 5.0 * 1.5 * 1.5 / 1000
    vol = lesion_volumes(mask, geo, LABELS, ct)
    assert vol["volume_ml_ground_glass"] == pytest.approx(6 * voxel_ml)
    assert vol["volume_ml_consolidation"] == pytest.approx(2 * voxel_ml)
    assert vol["volume_ml_lesion"] == pytest.approx(8 * voxel_ml)
    assert vol["lung_volume_ml"] == pytest.approx(lungs.sum() * voxel_ml)
    assert vol["lung_involvement"] == pytest.approx(8 / lungs.sum())
    assert "volume_ml_background" not in vol


def test_volumes_without_ct_have_no_lung_figures() -> None:
    mask = np.ones((2, 3, 4), np.uint8)
    vol = lesion_volumes(mask, _geometry(mask.shape, (1.0, 2.0, 3.0)), LABELS, None)
    assert vol["volume_ml_lesion"] == pytest.approx(24 * 6 / 1000)
    assert vol["lung_volume_ml"] is None and vol["lung_involvement"] is None


def test_trachea_is_not_counted_as_lung() -> None:
    # The preprocessing lung mask drops pure air (gas, airways); the earlier estimator of
    # this module kept any dark component of >= 10% of the largest: 480 voxels of this one.
    ct, lungs = _chest()
    ct[:, 14:22, 18:23] = -1000.0  # a 12 x 7.5 mm, 60 mm long air column between the lungs
    np.testing.assert_array_equal(estimate_lung_mask(ct, _geometry(ct.shape)), lungs)


def test_sagittal_storage_gives_the_axial_answer() -> None:
    """A trachea touching the right lung, off the front-back centre, is removed by the
    airway search, which needs the left-right axis last: the same chest stored as sagittal
    slices (array axes = patient x, z, y) must give the same lungs. Moving only the
    head-feet axis first (the earlier rule) left 480 trachea voxels in the mask here."""
    ct, lungs = _chest()
    ct[:, 10:14, 19:25] = -1000.0
    axial = estimate_lung_mask(ct, _geometry(ct.shape))
    assert not (axial & ~lungs).any()
    sagittal = np.ascontiguousarray(np.transpose(ct, (2, 0, 1)))
    # Image axes (reversed array axes): 0 = patient y, 1 = patient z, 2 = patient x.
    geo = _geometry(sagittal.shape, (1.5, 5.0, 1.5), (0, 0, 1, 1, 0, 0, 0, 1, 0))
    assert anatomical_order(geo) == (1, 2, 0)
    np.testing.assert_array_equal(estimate_lung_mask(sagittal, geo), np.transpose(axial, (2, 0, 1)))


def test_small_lung_on_a_2d_slice_is_found() -> None:
    # A 2D image is one nominal 1 mm slice: two 9 cm^2 lung sections (0.9 ml each) must not
    # fall under the 3D minimum of 5 ml.
    ct, lungs = _chest(shape=(1, 40, 40))
    identity = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    geo = ImageGeometry((1, 40, 40), (1.0, 2.5, 2.5), (0.0, 0.0, 0.0), identity, is_2d=True)
    np.testing.assert_array_equal(estimate_lung_mask(ct, geo), lungs)


def test_fine_grids_are_masked_at_about_1_5_mm() -> None:
    assert [inplane_stride(s) for s in (2.0, 1.5, 1.0, 0.75, 0.7, 0.5, 0.3)] == [
        1,
        1,
        1,
        2,
        2,
        3,
        5,
    ]


def test_strided_estimate_matches_the_full_resolution_mask() -> None:
    """A chest at 0.5 mm in-plane (masked at 1.5 mm, stride 3) against the same chest's
    mask computed at full resolution: same lungs, volume within 2 %."""
    ct = np.repeat(np.repeat(_chest((6, 40, 40))[0], 3, axis=1), 3, axis=2)
    lungs = np.repeat(np.repeat(_chest((6, 40, 40))[1], 3, axis=1), 3, axis=2)
    geo = _geometry(ct.shape, spacing=(5.0, 0.5, 0.5))
    strided = estimate_lung_mask(ct, geo)
    full = lung_mask(ct, (5.0, 0.5, 0.5))
    assert strided.shape == ct.shape
    assert abs(int(strided.sum()) - int(full.sum())) <= 0.02 * full.sum()
    assert 2 * (strided & lungs).sum() / (strided.sum() + lungs.sum()) > 0.95
