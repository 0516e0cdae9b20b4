"""Image I/O: geometry round trips, atomic writes, clear errors, mask checks, strict JSON."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from autojoint.io.case_loading import load_channels, load_label
from autojoint.io.files import read_json, write_json
from autojoint.io.image_io import (
    MAX_SPACING_MM,
    MIN_SPACING_MM,
    SLICE_SPACING_2D_MM,
    ImageGeometry,
    ImageReadError,
    geometry_of,
    read_geometry,
    read_image,
    spacing_problem,
    write_image,
)
from tests.shared_data import SHARED_DATA
from tests.synthetic import write_volume

FLIPPED = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
SPACING_ZYX = (3.0, 0.75, 0.5)
ORIGIN_XYZ = (12.5, -40.0, 7.25)


def _geometry(shape=(5, 7, 9)) -> ImageGeometry:
    return ImageGeometry(shape=shape, spacing=SPACING_ZYX, origin=ORIGIN_XYZ, direction=FLIPPED)


def _ramp(shape=(5, 7, 9)) -> np.ndarray:
    # Distinct values per voxel, so any axis swap or flip would show up.
    return np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape) - 100.0


# --- round trips -------------------------------------------------------------------------


def test_write_read_round_trip_keeps_array_and_geometry(tmp_path: Path) -> None:
    arr, geo = _ramp(), _geometry()
    path = tmp_path / "sub" / "img.nii.gz"
    write_image(arr, geo, path)
    back, geo_back = read_image(path)
    np.testing.assert_array_equal(back, arr)
    assert back.dtype == np.float32
    assert geo_back.shape == (5, 7, 9)
    np.testing.assert_allclose(geo_back.spacing, SPACING_ZYX, rtol=1e-6)
    np.testing.assert_allclose(geo_back.origin, ORIGIN_XYZ, atol=1e-5)
    np.testing.assert_allclose(geo_back.direction, FLIPPED, atol=1e-6)
    assert geo_back.matches(geo)


def test_spacing_is_reported_in_zyx_order(tmp_path: Path) -> None:
    # Written with the independent test helper, which hands ITK (x, y, z) itself.
    path = tmp_path / "aniso.nii.gz"
    write_volume(
        np.zeros((4, 6, 8), np.int16),
        path,
        spacing_zyx=SPACING_ZYX,
        origin=ORIGIN_XYZ,
        direction=FLIPPED,
    )
    arr, geo = read_image(path)
    assert arr.shape == (4, 6, 8)
    assert geo.shape == (4, 6, 8)
    np.testing.assert_allclose(geo.spacing, SPACING_ZYX, rtol=1e-6)
    # The raw ITK spacing is (x, y, z): the reverse.
    np.testing.assert_allclose(sitk.ReadImage(str(path)).GetSpacing(), SPACING_ZYX[::-1], rtol=1e-6)
    header_only = read_geometry(path)
    assert header_only.matches(geo)
    np.testing.assert_allclose(header_only.spacing, SPACING_ZYX, rtol=1e-6)


def test_geometry_of_and_dict_round_trip() -> None:
    img = sitk.GetImageFromArray(np.zeros((2, 3, 4), np.float32))
    img.SetSpacing((0.5, 0.75, 3.0))
    img.SetOrigin(ORIGIN_XYZ)
    img.SetDirection(FLIPPED)
    geo = geometry_of(img)
    assert geo.shape == (2, 3, 4)
    assert geo.spacing == SPACING_ZYX
    assert ImageGeometry.from_dict(json.loads(json.dumps(geo.to_dict()))) == geo


def test_geometry_matches_detects_differences() -> None:
    geo = _geometry()
    assert geo.matches(
        ImageGeometry(
            geo.shape, tuple(s * (1 + 1e-7) for s in geo.spacing), geo.origin, geo.direction
        )
    )
    assert not geo.matches(ImageGeometry((5, 7, 10), geo.spacing, geo.origin, geo.direction))
    assert not geo.matches(ImageGeometry(geo.shape, (2.0, 0.75, 0.5), geo.origin, geo.direction))
    assert not geo.matches(ImageGeometry(geo.shape, geo.spacing, (12.5, -40.0, 8.0), geo.direction))
    assert not geo.matches(
        ImageGeometry(geo.shape, geo.spacing, geo.origin, (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
    )


def test_write_image_is_atomic_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "out.nii.gz"
    write_image(_ramp(), _geometry(), path)
    write_image(_ramp() * 2, _geometry(), path)  # overwrite in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nii.gz"]
    np.testing.assert_array_equal(read_image(path)[0], _ramp() * 2)


def test_write_image_refuses_shape_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "bad.nii.gz"
    with pytest.raises(ValueError, match="does not match geometry"):
        write_image(np.zeros((5, 7, 8), np.float32), _geometry(), path)
    assert list(tmp_path.iterdir()) == []


# --- read errors -------------------------------------------------------------------------


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nope_0000.nii.gz"
    with pytest.raises(ImageReadError, match="nope_0000.nii.gz.*not found"):
        read_image(path)
    with pytest.raises(ImageReadError, match="nope_0000.nii.gz"):
        read_geometry(path)


def test_corrupt_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.nii.gz"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 2048, dtype=np.uint8).tobytes())
    with pytest.raises(ImageReadError, match="corrupt.nii.gz.*cannot be read"):
        read_image(path)
    with pytest.raises(ImageReadError, match="corrupt.nii.gz"):
        read_geometry(path)


def test_2d_image_round_trips_as_one_slice(tmp_path: Path) -> None:
    # A 2D image is read as (1, Y, X) with the nominal 1 mm slice spacing and written back
    # as a 2D image on exactly the input's grid.
    path = tmp_path / "slice.nii.gz"
    pixels = np.arange(6 * 7, dtype=np.int16).reshape(6, 7)
    img = sitk.GetImageFromArray(pixels)
    img.SetSpacing((0.5, 0.75))
    img.SetOrigin((12.5, -40.0))
    img.SetDirection((-1.0, 0.0, 0.0, -1.0))
    sitk.WriteImage(img, str(path))

    array, geo = read_image(path)
    assert array.shape == (1, 6, 7) and geo.is_2d and geo.num_dims == 2
    np.testing.assert_array_equal(array[0], pixels)
    assert geo.spacing == (SLICE_SPACING_2D_MM, 0.75, 0.5)
    assert geo.origin == (12.5, -40.0, 0.0)
    assert geo.direction == (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
    assert read_geometry(path) == geo
    assert ImageGeometry.from_dict(json.loads(json.dumps(geo.to_dict()))) == geo

    out = tmp_path / "out.nii.gz"
    write_image(array.astype(np.int16), geo, out)
    back = sitk.ReadImage(str(out))
    assert back.GetDimension() == 2
    assert back.GetSize() == img.GetSize()
    np.testing.assert_allclose(back.GetSpacing(), img.GetSpacing())
    np.testing.assert_allclose(back.GetOrigin(), img.GetOrigin())
    np.testing.assert_allclose(back.GetDirection(), img.GetDirection())
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), pixels)


def test_2d_and_3d_grids_never_match(tmp_path: Path) -> None:
    # A one-slice 3D volume on the same grid as a 2D image is still another dimensionality.
    flat = tmp_path / "flat.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((6, 7), np.float32)), str(flat))
    vol = tmp_path / "vol.nii.gz"
    write_volume(np.zeros((1, 6, 7), np.float32), vol, spacing_zyx=(1.0, 1.0, 1.0))
    geo_2d, geo_3d = read_geometry(flat), read_geometry(vol)
    assert geo_2d.shape == geo_3d.shape and not geo_2d.matches(geo_3d)
    with pytest.raises(ImageReadError, match=r"vol.nii.gz: mask grid \(3D.* image \(2D"):
        load_label(vol, geo_2d, 2)
    with pytest.raises(ImageReadError, match=r"vol.nii.gz: grid .*\(3D\) differs"):
        load_channels([flat, vol])


def test_4d_image_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "series.nii.gz"
    img = sitk.GetImageFromArray(np.zeros((2, 3, 4, 5), np.float32), isVector=False)
    assert img.GetDimension() == 4
    sitk.WriteImage(img, str(path))
    with pytest.raises(ImageReadError, match=r"series.nii.gz: is 4D"):
        read_image(path)


@pytest.mark.parametrize("name", ["nan.nii.gz", "nan.nii", "nan.nrrd", "nan.mha"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_voxels_are_refused(tmp_path: Path, name: str, dtype: type) -> None:
    # SimpleITK's NIfTI reader silently turns NaN into 0; the check must still catch it.
    arr = _ramp().astype(dtype)
    arr[2, 3, 4] = np.nan
    path = tmp_path / name
    write_volume(arr, path)
    with pytest.raises(ImageReadError, match=rf"{name}: contains NaN"):
        read_image(path)


@pytest.mark.parametrize("name", ["inf.nii.gz", "inf.mha"])
def test_infinite_voxels_are_refused(tmp_path: Path, name: str) -> None:
    arr = _ramp()
    arr[0, 0, 0] = -np.inf
    path = tmp_path / name
    write_volume(arr, path)
    with pytest.raises(ImageReadError, match=rf"{name}: contains NaN or infinite"):
        read_image(path)


@pytest.mark.parametrize(
    ("spacing", "words"),
    [
        ((0.0, 1.0, 1.0), "not a positive finite"),
        ((1.0, -0.7, 0.7), "not a positive finite"),
        ((math.nan, 1.0, 1.0), "not a positive finite"),
        ((1.0, 1.0, math.inf), "not a positive finite"),
        ((1.0, 1e-6, 1e-6), "below 0.01 mm"),
        ((0.0025, 0.0008, 0.0008), "below 0.01 mm"),  # metres
        ((2500.0, 800.0, 800.0), "above 100 mm"),  # micrometres
    ],
)
def test_implausible_spacings_are_named(spacing: tuple, words: str) -> None:
    problem = spacing_problem(spacing)
    assert problem is not None and words in problem and "true spacing in mm" in problem


@pytest.mark.parametrize(
    "spacing",
    [(MIN_SPACING_MM, 0.3, 0.3), (MAX_SPACING_MM, 0.8, 0.8), (5.0, 0.7, 0.7), (0.05, 0.02, 0.02)],
)
def test_ct_mr_and_micro_ct_spacings_pass(spacing: tuple) -> None:
    assert spacing_problem(spacing) is None


@pytest.mark.parametrize("dims", [3, 2])
def test_reading_refuses_an_implausible_spacing(tmp_path: Path, dims: int) -> None:
    # Checked from the header, before any voxel is used (read_image and read_geometry alike).
    path = tmp_path / "metres.nii.gz"
    arr = _ramp() if dims == 3 else _ramp()[0]
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.0008,) * dims)
    sitk.WriteImage(img, str(path))
    for read in (read_image, read_geometry):
        with pytest.raises(ImageReadError, match=r"metres.nii.gz: voxel spacing .* below 0.01"):
            read(path)


@pytest.mark.parametrize("name", ["ok.nii.gz", "ok.nii", "ok.nrrd"])
def test_finite_float_images_read_back_exactly(tmp_path: Path, name: str) -> None:
    arr = _ramp().astype(np.float64) / 7.0
    path = tmp_path / name
    write_volume(arr, path)
    back, _ = read_image(path, dtype=np.float64)
    np.testing.assert_array_equal(back, arr)


# --- case loading ------------------------------------------------------------------------


def test_load_channels_stacks_and_checks_grid(tmp_path: Path) -> None:
    a, b = _ramp((3, 4, 5)), -_ramp((3, 4, 5))
    write_volume(a, tmp_path / "c_0000.nii.gz", SPACING_ZYX, ORIGIN_XYZ, FLIPPED)
    write_volume(b, tmp_path / "c_0001.nii.gz", SPACING_ZYX, ORIGIN_XYZ, FLIPPED)
    data, geo = load_channels([tmp_path / "c_0000.nii.gz", tmp_path / "c_0001.nii.gz"])
    assert data.shape == (2, 3, 4, 5)
    np.testing.assert_array_equal(data[0], a)
    np.testing.assert_array_equal(data[1], b)
    assert geo.shape == (3, 4, 5)

    write_volume(b, tmp_path / "d_0001.nii.gz", (1.0, 0.75, 0.5), ORIGIN_XYZ, FLIPPED)
    with pytest.raises(ImageReadError, match="d_0001.nii.gz"):
        load_channels([tmp_path / "c_0000.nii.gz", tmp_path / "d_0001.nii.gz"])
    with pytest.raises(ImageReadError, match="no image files"):
        load_channels([])


def _image_and_mask(tmp_path: Path, mask: np.ndarray, **mask_geo) -> tuple[ImageGeometry, Path]:
    img_path, mask_path = tmp_path / "case_0000.nii.gz", tmp_path / "case.nii.gz"
    write_volume(np.zeros(mask.shape, np.int16), img_path, SPACING_ZYX, ORIGIN_XYZ, FLIPPED)
    kw = {"spacing_zyx": SPACING_ZYX, "origin": ORIGIN_XYZ, "direction": FLIPPED, **mask_geo}
    write_volume(mask, mask_path, **kw)
    return read_image(img_path)[1], mask_path


def test_load_label_valid_mask(tmp_path: Path) -> None:
    mask = np.zeros((3, 4, 5), np.uint8)
    mask[1, 1:3, 2] = 1
    mask[2, 0, 0] = 2
    geo, path = _image_and_mask(tmp_path, mask)
    out = load_label(path, geo, num_labels=3)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, mask)


@pytest.mark.parametrize(
    "mask_geo",
    [
        {"spacing_zyx": (1.5, 0.75, 0.5)},
        {"origin": (0.0, 0.0, 0.0)},
        {"direction": (1, 0, 0, 0, 1, 0, 0, 0, 1)},
    ],
    ids=["spacing", "origin", "direction"],
)
def test_load_label_geometry_mismatch(tmp_path: Path, mask_geo: dict) -> None:
    geo, path = _image_and_mask(tmp_path, np.zeros((3, 4, 5), np.uint8), **mask_geo)
    with pytest.raises(ImageReadError, match=r"case.nii.gz: mask grid .* does not match"):
        load_label(path, geo, num_labels=3)


def test_load_label_shape_mismatch(tmp_path: Path) -> None:
    geo, _ = _image_and_mask(tmp_path, np.zeros((3, 4, 5), np.uint8))
    other = tmp_path / "other.nii.gz"
    write_volume(np.zeros((3, 4, 6), np.uint8), other, SPACING_ZYX, ORIGIN_XYZ, FLIPPED)
    with pytest.raises(ImageReadError, match="other.nii.gz: mask grid"):
        load_label(other, geo, num_labels=3)


def test_load_label_out_of_range_values(tmp_path: Path) -> None:
    mask = np.zeros((3, 4, 5), np.uint8)
    mask[0, 0, 0] = 3
    mask[0, 0, 1] = 7
    geo, path = _image_and_mask(tmp_path, mask)
    with pytest.raises(ImageReadError, match=r"label values \[3, 7\].*valid: 0\.\.2"):
        load_label(path, geo, num_labels=3)


def test_load_label_negative_values(tmp_path: Path) -> None:
    mask = np.zeros((3, 4, 5), np.int16)
    mask[1, 1, 1] = -1
    geo, path = _image_and_mask(tmp_path, mask)
    with pytest.raises(ImageReadError, match=r"label values \[-1\]"):
        load_label(path, geo, num_labels=3)


def test_load_label_non_integer_values(tmp_path: Path) -> None:
    mask = np.zeros((3, 4, 5), np.float32)
    mask[1, 1, 1] = 0.5
    geo, path = _image_and_mask(tmp_path, mask)
    with pytest.raises(ImageReadError, match="case.nii.gz: mask has non-integer values"):
        load_label(path, geo, num_labels=3)


# --- JSON ----------------------------------------------------------------------------------


def test_write_json_writes_nan_and_inf_as_null(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    write_json(
        {
            "dice": math.nan,
            "per_case": [1.5, float("inf"), (2, -math.inf)],
            "nested": {3: {"x": np.float64("nan").item()}},
        },
        path,
    )

    def refuse(const: str) -> None:
        raise AssertionError(f"non-strict JSON constant {const}")

    strict = json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)
    assert strict == {
        "dice": None,
        "per_case": [1.5, None, [2, None]],
        "nested": {"3": {"x": None}},
    }
    assert read_json(path) == strict
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_read_json_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.json"):
        read_json(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="bad.json: is not valid JSON"):
        read_json(bad)
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes('{"labels": {"Milchglas\u00e4": 1}}'.encode("latin-1"))
    with pytest.raises(ValueError, match="latin1.json: is not UTF-8 text"):
        read_json(latin1)


def test_json_is_utf8_whatever_the_locale(tmp_path: Path) -> None:
    """A process in the C locale (the test process was seen to turn to it after SimpleITK's
    DICOM path) still reads and writes non-ASCII label names: the encoding is explicit."""
    path = tmp_path / "dataset.json"
    path.write_bytes('{"labels": {"verre d\u00e9poli": 1}}'.encode())
    script = (
        "import sys; from pathlib import Path; "
        "from autojoint.io.files import read_json, write_json; "
        "write_json(read_json(Path(sys.argv[1])), Path(sys.argv[2]))"
    )
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    subprocess.run(
        [sys.executable, "-c", script, str(path), str(tmp_path / "out.json")], env=env, check=True
    )
    assert read_json(tmp_path / "out.json") == {"labels": {"verre d\u00e9poli": 1}}


# --- real DICOM series -----------------------------------------------------------------------


def _shared_data() -> Path:
    return SHARED_DATA


@pytest.mark.realdata
def test_read_real_dicom_series() -> None:
    folder = _shared_data() / "covid_ct_md" / "dicom_P002_subset"
    if not folder.is_dir():
        pytest.skip(f"../shared/data absent: {folder} not found (real COVID-CT-MD DICOM subset)")
    arr, geo = read_image(folder)
    assert arr.shape == (24, 512, 512)
    assert geo.shape == (24, 512, 512)
    np.testing.assert_allclose(geo.spacing, (2.0, 0.6035, 0.6035), atol=1e-3)
    # Hounsfield units: air is about -1000, and the scan holds body tissue above 0 HU.
    assert arr.min() <= -900
    assert arr.max() > 0
    # read_geometry on a folder goes through the full read and agrees.
    assert read_geometry(folder).matches(geo)


def test_empty_directory_is_not_a_dicom_series(tmp_path: Path) -> None:
    folder = tmp_path / "empty_series"
    folder.mkdir()
    with pytest.raises(ImageReadError, match="empty_series: directory holds no DICOM series"):
        read_image(folder)
