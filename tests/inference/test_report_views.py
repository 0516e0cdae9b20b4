"""The report's pictures: the same anatomy gives the same picture however the volume is
stored (flipped or permuted axes), in the radiological orientation, on square pixels."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from autojoint.inference.report_views import (
    MAX_PIXELS,
    VIEWS,
    overlay_labels,
    pick_slice,
    thumbnail,
    view_geometry,
    view_slice,
    views_of,
)
from autojoint.io.image_io import ImageGeometry

SPACING = (2.5, 0.8, 0.6)


def _geometry(
    shape: tuple[int, ...], spacing=SPACING, direction: np.ndarray | None = None
) -> ImageGeometry:
    direction = np.eye(3) if direction is None else direction
    return ImageGeometry(
        shape=(int(shape[0]), int(shape[1]), int(shape[2])),
        spacing=(float(spacing[0]), float(spacing[1]), float(spacing[2])),
        origin=(0.0, 0.0, 0.0),
        direction=tuple(float(v) for v in np.asarray(direction).ravel()),
    )


def _stored(volume: np.ndarray, flips: tuple[bool, ...], perm: tuple[int, ...]):
    """The same anatomy as an identity-direction ``volume``, stored with the array axes
    reversed where ``flips`` says, then permuted by ``perm`` (new axis k = old axis
    perm[k]); returns the array and its geometry."""
    direction = np.eye(3)
    array = volume
    for axis, flip in enumerate(flips):
        if flip:
            array = np.flip(array, axis)
            direction[:, 2 - axis] *= -1  # array axis a is image axis 2 - a
    array = np.transpose(array, perm)
    columns = [direction[:, 2 - perm[2 - j]] for j in range(3)]
    spacing = [SPACING[p] for p in perm]
    return np.ascontiguousarray(array), _geometry(array.shape, spacing, np.stack(columns, 1))


def test_pictures_do_not_depend_on_how_the_volume_is_stored() -> None:
    rng = np.random.default_rng(0)
    volume = rng.integers(0, 1000, (6, 9, 11)).astype(np.int16)
    reference = _geometry(volume.shape)
    expected = {}
    for view in VIEWS:
        layout = view_geometry(reference, view)
        expected[view] = view_slice(volume, reference, layout, 2)
    for flips in itertools.product([False, True], repeat=3):
        for perm in itertools.permutations(range(3)):
            array, geometry = _stored(volume, flips, perm)
            for view in VIEWS:
                layout = view_geometry(geometry, view)
                index = 2
                if flips[perm[layout.slice_axis]]:  # the cut axis runs the other way
                    index = array.shape[layout.slice_axis] - 1 - 2
                picture = view_slice(array, geometry, layout, index)
                np.testing.assert_array_equal(picture, expected[view], err_msg=f"{view}")


def test_radiological_orientation() -> None:
    # Identity direction (LPS): x grows to the patient's left, y to posterior, z to the head.
    volume = np.zeros((10, 10, 10), np.uint8)
    volume[9, :, :] = 1  # the head end
    volume[:, 0, :] = 2  # anterior
    volume[:, :, 0] = 3  # the patient's right
    geometry = _geometry(volume.shape, (1.0, 1.0, 1.0))
    axial = view_slice(volume, geometry, view_geometry(geometry, "axial"), 5)
    assert set(axial[0, 1:]) == {2}  # anterior at the top
    assert set(axial[1:, 0]) == {3}  # the patient's right on the picture's left
    coronal = view_slice(volume, geometry, view_geometry(geometry, "coronal"), 5)
    assert set(coronal[0, 1:]) == {1}  # head at the top
    assert set(coronal[1:, 0]) == {3}
    sagittal = view_slice(volume, geometry, view_geometry(geometry, "sagittal"), 5)
    assert set(sagittal[0, 1:]) == {1}
    assert set(sagittal[1:, 0]) == {2}  # anterior on the left


def test_pictures_have_square_pixels_and_a_size_limit() -> None:
    geometry = _geometry((12, 40, 50), (2.5, 0.8, 0.6))
    volume = np.zeros(geometry.shape, np.float32)
    coronal = view_slice(volume, geometry, view_geometry(geometry, "coronal"), 20)
    # 30 mm high (12 x 2.5), 30 mm wide (50 x 0.6), pixels of the finer spacing 0.6 mm.
    assert coronal.shape == (50, 50)
    axial = view_slice(volume, geometry, view_geometry(geometry, "axial"), 3)
    assert axial.shape == (53, 50)  # 32 mm x 30 mm
    big = _geometry((300, 512, 512), (1.0, 0.5, 0.5))
    sagittal = view_slice(np.zeros(big.shape, np.uint8), big, view_geometry(big, "sagittal"), 256)
    assert max(sagittal.shape) == MAX_PIXELS and sagittal.shape == (512, 437)


def test_slice_choice_follows_lesions_then_evidence() -> None:
    mask = np.zeros((8, 10, 10), np.uint8)
    evidence = np.zeros(mask.shape, np.float32)
    assert pick_slice(mask, None, 0) == 4  # nothing: the middle
    evidence[6, 2, 2] = 1.0
    assert pick_slice(mask, evidence, 0) == 6
    mask[1, :3, :3] = 1
    mask[3, :2, :2] = 2
    assert pick_slice(mask, evidence, 0) == 1
    assert pick_slice(mask, evidence, 2) == 0


def test_2d_images_have_one_view() -> None:
    flat = ImageGeometry(
        (1, 30, 30), (1.0, 0.7, 0.7), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()), True
    )
    assert views_of(flat) == ("axial",)
    assert views_of(_geometry((5, 30, 30))) == VIEWS


def test_overlay_fills_and_outlines_each_label() -> None:
    grey = np.full((7, 7, 3), 0.5)
    labels = np.zeros((7, 7), np.uint8)
    labels[1:6, 1:6] = 1
    out = overlay_labels(grey, labels, [1, 2])
    np.testing.assert_allclose(out[1, 1], [0.0, 1.0, 0.0], atol=1e-6)  # outline: lime
    assert 0.5 < out[3, 3, 1] < 1.0 and out[3, 3, 0] < 0.5  # fill: tinted green
    np.testing.assert_array_equal(out[0, 0], grey[0, 0])  # outside: the scan
    outline_only = overlay_labels(grey, labels, [1, 2], fill=False)
    np.testing.assert_array_equal(outline_only[3, 3], grey[3, 3])
    np.testing.assert_array_equal(grey, 0.5)  # input untouched


def test_view_names_are_checked() -> None:
    with pytest.raises(ValueError, match="axial, coronal, sagittal"):
        view_geometry(_geometry((3, 3, 3)), "oblique")


def test_thumbnail_size() -> None:
    assert thumbnail(np.zeros((512, 300, 3), np.uint8)).shape == (128, 75, 3)
    assert thumbnail(np.zeros((40, 40, 3), np.uint8)).shape == (40, 40, 3)
