"""Image reading and writing through SimpleITK, with the project's axis convention.

Convention (checked here, at the I/O boundary): arrays are ``(Z, Y, X)`` exactly as
``sitk.GetArrayFromImage`` returns them, and every ``spacing`` tuple is in the same
``(z, y, x)`` order. ``origin`` and ``direction`` stay in ITK's physical ``(x, y, z)``
convention because they are only ever handed back to SimpleITK unchanged.

2D images (one slice per file, e.g. MSD-Net's CT slices) are read as volumes of shape
``(1, Y, X)`` with a nominal slice spacing of :data:`SLICE_SPACING_2D_MM` (1 mm), origin
``(x, y, 0)`` and the 2x2 direction embedded in a 3x3 one; ``ImageGeometry.is_2d`` records
it, so :func:`write_image` writes results back as 2D images with the input's size, spacing,
origin and direction. The constant z spacing keeps every 2D case at one slice through
resampling (the planner's target z spacing is the same constant).
"""

from __future__ import annotations

import gzip
import logging
import math
import os
import shutil
import struct
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from autojoint.io.dicom_series import (
    NO_CHOICE,
    DicomSeries,
    DicomSeriesError,
    SeriesChoice,
    SeriesPick,
    choose_series,
    dicom_folder,
    read_series,
    series_problem,
)
from autojoint.io.dicom_zip import DicomZipError, is_zip

logger = logging.getLogger(__name__)


class ImageReadError(ValueError):
    """An input image is missing, unreadable or not a usable 2D or 3D image."""


# Nominal spacing (mm) of the one slice a 2D image is read as; the planner's target z
# spacing for 2D data is the same constant, so a slice stays one slice when resampled.
SLICE_SPACING_2D_MM = 1.0


# Plausible voxel spacing (mm, per axis) of a CT or MR scan. Clinical scans lie within about
# 0.2-10 mm and preclinical micro-CT reaches 0.01 mm. Outside these bounds the header is
# wrong, most often in another unit (metres give ~0.001, micrometres ~1000), and what is
# computed in mm goes wild (predicting a scan with 1e-6 mm pixels ended in "Unable to
# allocate 466 TiB"; a 1e-6 mm slice spacing shrank a scan to one slice without a word).
MIN_SPACING_MM = 0.01
MAX_SPACING_MM = 100.0


def spacing_problem(spacing: Sequence[float]) -> str | None:
    """Why ``spacing`` (mm, ``(z, y, x)``) cannot be a scan's voxel size, or None.

    Refused: a non-finite or non-positive value, or one outside
    [:data:`MIN_SPACING_MM`, :data:`MAX_SPACING_MM`].
    """
    values = [float(v) for v in spacing]
    shown = "(" + ", ".join(f"{v:g}" for v in values) + ")"
    if any(not math.isfinite(v) or v <= 0 for v in values):
        what = "not a positive finite number on some axis"
    elif any(v < MIN_SPACING_MM for v in values):
        what = f"below {MIN_SPACING_MM:g} mm on some axis"
    elif any(v > MAX_SPACING_MM for v in values):
        what = f"above {MAX_SPACING_MM:g} mm on some axis"
    else:
        return None
    return (
        f"voxel spacing {shown} mm (z, y, x) is {what}; autojoint accepts {MIN_SPACING_MM:g} to "
        f"{MAX_SPACING_MM:g} mm per axis (CT and MR scans). The header is wrong, often in "
        "another unit (metres or micrometres instead of mm): write the true spacing in mm "
        "into the file (e.g. SimpleITK image.SetSpacing, then WriteImage) and run again."
    )


# When two grids are the same grid (float round-off in headers is not a difference): the
# one definition used by ImageGeometry.matches, case_loading.geometry_differences and the
# converters' same_grid.
SPACING_RTOL = 1e-4
ORIGIN_ATOL_MM = 1e-3
DIRECTION_ATOL = 1e-4


@dataclass(frozen=True)
class ImageGeometry:
    """Where an array sits in physical space; enough to write a result on the same grid.

    Attributes:
        shape: voxels ``(Z, Y, X)``.
        spacing: mm ``(z, y, x)``.
        origin: mm, ITK order ``(x, y, z)``.
        direction: 9 cosines, ITK row-major order.
        is_2d: the file is a 2D image, held as one slice (``shape[0] == 1``, z spacing
            :data:`SLICE_SPACING_2D_MM`, origin z 0, direction z row/column the unit
            vector); written back as 2D.
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]
    is_2d: bool = False

    def to_dict(self) -> dict:
        return {
            "shape": list(self.shape),
            "spacing": list(self.spacing),
            "origin": list(self.origin),
            "direction": list(self.direction),
            "is_2d": self.is_2d,
        }

    @classmethod
    def from_dict(cls, d: dict) -> ImageGeometry:
        return cls(
            shape=tuple(int(v) for v in d["shape"]),  # type: ignore[arg-type]
            spacing=tuple(float(v) for v in d["spacing"]),  # type: ignore[arg-type]
            origin=tuple(float(v) for v in d["origin"]),  # type: ignore[arg-type]
            direction=tuple(float(v) for v in d["direction"]),
            is_2d=bool(d.get("is_2d", False)),
        )

    @property
    def num_dims(self) -> int:
        """2 for a 2D image, 3 for a volume."""
        return 2 if self.is_2d else 3

    def matches(
        self,
        other: ImageGeometry,
        *,
        rtol: float = SPACING_RTOL,
        atol_mm: float = ORIGIN_ATOL_MM,
    ) -> bool:
        """True if both describe the same voxel grid (tolerant to float round-off)."""
        return (
            self.shape == other.shape
            and self.is_2d == other.is_2d
            and np.allclose(self.spacing, other.spacing, rtol=rtol, atol=0.0)
            and np.allclose(self.origin, other.origin, rtol=0.0, atol=atol_mm)
            and np.allclose(self.direction, other.direction, rtol=0.0, atol=DIRECTION_ATOL)
        )


def _read_sitk(path: Path, series: SeriesChoice = NO_CHOICE) -> sitk.Image:
    if not path.exists():
        raise ImageReadError(f"{path}: file not found. Check the path and the case naming.")
    if is_dicom_input(path):
        return _read_dicom(path, series)
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1] if str(err).strip() else ""
        raise ImageReadError(
            f"{path}: cannot be read as an image ({first}). The file is corrupt or "
            "not a format SimpleITK reads; re-export it as .nii.gz."
        ) from err


def is_dicom_input(path: Path) -> bool:
    """A folder of DICOM slices or a zip of one (an input case either way)."""
    return Path(path).is_dir() or is_zip(path)


def _read_dicom(path: Path, series: SeriesChoice = NO_CHOICE) -> sitk.Image:
    """The series of a DICOM folder or zip that ``series`` picks, after
    :func:`checked_series`."""
    try:
        with dicom_folder(path) as folder:
            return read_series(checked_series(folder, series).series)
    except (DicomSeriesError, DicomZipError) as err:
        raise ImageReadError(str(err)) from err


def checked_series(
    folder: Path, choice: SeriesChoice = NO_CHOICE, *, modality: str | None = None
) -> SeriesPick:
    """The series of ``folder`` to read (:func:`choose_series`), refused when its slices
    are not a regular grid or not of ``modality`` (:func:`series_problem`).

    Raises:
        DicomSeriesError: naming the folder, the reason and the fix.
    """
    pick = choose_series(folder, choice)
    if problem := series_problem(pick.series, modality=modality):
        raise DicomSeriesError(problem)
    return pick


# NIfTI float datatype codes -> numpy element type.
_NIFTI_FLOAT_TYPES = {16: "f4", 64: "f8"}


def _nifti_has_nonfinite(path: Path, num_values: int) -> bool:
    """True if a float NIfTI file stores NaN or infinite voxels.

    The NIfTI reader inside SimpleITK silently replaces non-finite floats by 0, so the
    check after reading cannot see them; look at the stored values instead.
    """
    name = path.name.lower()
    if not (name.endswith((".nii", ".nii.gz"))):
        return False
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
    with gzip.open(path, "rb") if gzipped else open(path, "rb") as fh:
        head = fh.read(540)
        if len(head) < 348:
            return False
        for order in "<>":
            size = struct.unpack(order + "i", head[:4])[0]
            if size == 348:  # NIfTI-1
                code = struct.unpack(order + "h", head[70:72])[0]
                offset = int(struct.unpack(order + "f", head[108:112])[0])
                break
            if size == 540:  # NIfTI-2
                code = struct.unpack(order + "h", head[12:14])[0]
                offset = int(struct.unpack(order + "q", head[168:176])[0])
                break
        else:
            return False
        if code not in _NIFTI_FLOAT_TYPES:
            return False
        elem = np.dtype(order + _NIFTI_FLOAT_TYPES[code])
        fh.seek(offset if offset >= size else size)
        buf = fh.read(num_values * elem.itemsize)
        values = np.frombuffer(buf[: len(buf) // elem.itemsize * elem.itemsize], dtype=elem)
    return not bool(np.all(np.isfinite(values)))


def _dimension_error(path: Path, dim: int) -> ImageReadError:
    return ImageReadError(
        f"{path}: is {dim}D; autojoint reads one 2D image or one 3D volume per file. "
        "Split 4D series into one file per time point (or per channel, CASE_000C)."
    )


def _nifti_data_end(path: Path) -> tuple[int, bool] | None:
    """``(bytes the header promises: vox_offset + voxel data, is gzipped)`` of a NIfTI file,
    or None for other formats or an unparsable header (SimpleITK judges those)."""
    name = path.name.lower()
    if not (name.endswith((".nii", ".nii.gz"))):
        return None
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
    try:
        with gzip.open(path, "rb") if gzipped else open(path, "rb") as fh:
            head = fh.read(540)
    except (OSError, EOFError, zlib.error):
        return None
    for order in "<>":
        if len(head) >= 348 and struct.unpack(order + "i", head[:4])[0] == 348:  # NIfTI-1
            dims = struct.unpack(order + "8h", head[40:56])
            bitpix = struct.unpack(order + "h", head[72:74])[0]
            offset = int(struct.unpack(order + "f", head[108:112])[0])
            break
        if len(head) >= 540 and struct.unpack(order + "i", head[:4])[0] == 540:  # NIfTI-2
            dims = struct.unpack(order + "8q", head[16:80])
            bitpix = struct.unpack(order + "h", head[14:16])[0]
            offset = int(struct.unpack(order + "q", head[168:176])[0])
            break
    else:
        return None
    if not 1 <= dims[0] <= 7 or bitpix <= 0:
        return None
    count = int(np.prod([max(int(d), 1) for d in dims[1 : dims[0] + 1]]))
    return max(offset, 348) + count * bitpix // 8, gzipped


def _nifti_is_truncated(path: Path) -> bool:
    """True if a NIfTI file holds fewer voxel bytes than its header promises.

    SimpleITK reads a truncated file without an error (the missing voxels come out as
    zeros or garbage), so the length is checked here. For gzip the trailer's size field
    settles it at once; only when it disagrees is the stream decompressed to count.
    """
    expected = _nifti_data_end(path)
    if expected is None:
        return False
    need, gzipped = expected
    if not gzipped:
        return path.stat().st_size < need
    with open(path, "rb") as raw:
        raw.seek(-4, os.SEEK_END)
        if struct.unpack("<I", raw.read(4))[0] == need % 2**32:
            return False
    total = 0
    try:
        with gzip.open(path, "rb") as fh:
            while chunk := fh.read(1 << 22):
                total += len(chunk)
    except (EOFError, OSError, zlib.error):
        return True
    return total < need


def read_image(
    path: Path, *, dtype: type = np.float32, series: SeriesChoice = NO_CHOICE
) -> tuple[np.ndarray, ImageGeometry]:
    """Read one 2D or 3D single-channel image (NIfTI, NRRD, MHA, PNG, or a DICOM folder or
    zip holding one series: :func:`checked_series`). A 2D image becomes one slice
    ``(1, Y, X)`` (see the module docstring).

    Casts the voxel values to ``dtype`` (float32 by default, exact for int16 CT).

    Args:
        path: image file, or a folder (or zip) holding one DICOM series.
        dtype: dtype of the returned array.
        series: which series of a DICOM folder (or zip) holding several to read.

    Returns:
        ``(array, geometry)`` with ``array`` of shape ``(Z, Y, X)`` (``Z = 1`` for 2D).

    Raises:
        ImageReadError: missing/corrupt/truncated file, 1D or 4D image, multi-component
            pixels, implausible spacing (:func:`spacing_problem`), non-finite voxel
            values, or a DICOM folder refused by :func:`checked_series`.
    """
    path = Path(path)
    return _to_array(path, _read_sitk(path, series), dtype)


def read_dicom_series(
    series: DicomSeries, *, dtype: type = np.float32
) -> tuple[np.ndarray, ImageGeometry]:
    """:func:`read_image` for one chosen (and checked) series of a DICOM folder.

    Raises:
        ImageReadError: undecodable pixels, or the checks of :func:`read_image`.
    """
    try:
        img = read_series(series)
    except DicomSeriesError as err:
        raise ImageReadError(str(err)) from err
    return _to_array(series.folder, img, dtype)


def image_array(
    img: sitk.Image, *, source: str = "the image", dtype: type = np.float32
) -> tuple[np.ndarray, ImageGeometry]:
    """A SimpleITK image in memory as ``(array, geometry)``, checked as :func:`read_image`
    checks a file (dimensions, one component, plausible spacing, finite voxels; ``source``
    names it in messages). Casts the voxel values to ``dtype``.

    Shape:
        a 3D image -> ``(Z, Y, X)``; a 2D image -> ``(1, Y, X)``.
    """
    return _to_array(Path(source), img, dtype)


def _to_array(path: Path, img: sitk.Image, dtype: type) -> tuple[np.ndarray, ImageGeometry]:
    """The checked ``(array, geometry)`` of an image read from ``path``."""
    if img.GetDimension() not in (2, 3):
        raise _dimension_error(path, img.GetDimension())
    geometry = _checked_geometry(path, geometry_of(img))
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise ImageReadError(
            f"{path}: has {img.GetNumberOfComponentsPerPixel()} components per voxel; store "
            "each channel as its own file CASE_000C (nnU-Net layout)."
        )
    if path.is_file() and _nifti_is_truncated(path):
        raise ImageReadError(
            f"{path}: is truncated or corrupt (fewer readable voxel bytes than its header "
            "promises); the copy or download was interrupted. Copy or export the file again."
        )
    array: np.ndarray = sitk.GetArrayFromImage(img).astype(dtype, copy=False)
    if img.GetDimension() == 2:
        array = array[None]
    nonfinite = np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array))
    if (
        not nonfinite
        and path.is_file()
        and img.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64)
    ):
        nonfinite = _nifti_has_nonfinite(path, array.size)
    if nonfinite:
        raise ImageReadError(
            f"{path}: contains NaN or infinite voxels; replace them (e.g. with the air "
            "value -1000 HU) before planning or prediction."
        )
    return array, geometry


def _checked_geometry(path: Path, geometry: ImageGeometry) -> ImageGeometry:
    """``geometry``, after refusing a spacing no scan has (checked before any voxel is
    used, so a bad header costs a clear message, not an out-of-memory error later)."""
    problem = spacing_problem(geometry.spacing)
    if problem is not None:
        raise ImageReadError(f"{path}: {problem}")
    return geometry


def _geometry(
    size: tuple[int, ...],
    spacing: tuple[float, ...],
    origin: tuple[float, ...],
    direction: tuple[float, ...],
) -> ImageGeometry:
    """Geometry from ITK-ordered header values of a 2D or 3D image."""
    if len(size) == 2:  # one slice: nominal z spacing, z origin 0, 2x2 direction in a 3x3
        d = [float(v) for v in direction]
        return ImageGeometry(
            shape=(1, int(size[1]), int(size[0])),
            spacing=(SLICE_SPACING_2D_MM, float(spacing[1]), float(spacing[0])),
            origin=(float(origin[0]), float(origin[1]), 0.0),
            direction=(d[0], d[1], 0.0, d[2], d[3], 0.0, 0.0, 0.0, 1.0),
            is_2d=True,
        )
    return ImageGeometry(
        shape=(int(size[2]), int(size[1]), int(size[0])),
        spacing=(float(spacing[2]), float(spacing[1]), float(spacing[0])),
        origin=tuple(float(v) for v in origin),  # type: ignore[arg-type]
        direction=tuple(float(v) for v in direction),
    )


def geometry_of(img: sitk.Image) -> ImageGeometry:
    """Geometry of a 2D or 3D SimpleITK image in the project's convention."""
    return _geometry(img.GetSize(), img.GetSpacing(), img.GetOrigin(), img.GetDirection())


def read_geometry(path: Path) -> ImageGeometry:
    """Geometry from the header only (no voxel data read), for cheap consistency checks.

    Raises:
        ImageReadError: missing or unreadable file, 1D or 4D image, implausible spacing.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path}: file not found.")
    if is_dicom_input(path):
        return read_image(path)[1]
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        raise ImageReadError(f"{path}: header cannot be read; the file is corrupt.") from err
    if reader.GetDimension() not in (2, 3):
        raise _dimension_error(path, reader.GetDimension())
    geometry = _geometry(
        reader.GetSize(), reader.GetSpacing(), reader.GetOrigin(), reader.GetDirection()
    )
    return _checked_geometry(path, geometry)


def write_image(array: np.ndarray, geometry: ImageGeometry, path: Path) -> None:
    """Write ``array`` (Z, Y, X) on ``geometry`` atomically (temp file, then rename).

    A 2D geometry (``geometry.is_2d``) writes the one slice as a 2D image with the input's
    in-plane size, spacing, origin and direction.

    Raises:
        ValueError: if the array shape differs from the geometry's shape.
    """
    path = Path(path)
    if tuple(array.shape) != tuple(geometry.shape):
        raise ValueError(
            f"{path}: array shape {array.shape} does not match geometry {geometry.shape}."
        )
    write_sitk_image(sitk_image(array, geometry), path)


def sitk_image(array: np.ndarray, geometry: ImageGeometry) -> sitk.Image:
    """``array`` (Z, Y, X) as a SimpleITK image on ``geometry`` (2D for a 2D geometry, as
    :func:`write_image` writes it); the voxel type is the array's.

    Raises:
        ValueError: if the array shape differs from the geometry's shape.
    """
    if tuple(array.shape) != tuple(geometry.shape):
        raise ValueError(f"array shape {array.shape} does not match geometry {geometry.shape}.")
    if geometry.is_2d:
        d = geometry.direction
        img = sitk.GetImageFromArray(array[0])
        img.SetSpacing((geometry.spacing[2], geometry.spacing[1]))
        img.SetOrigin(geometry.origin[:2])
        img.SetDirection((d[0], d[1], d[3], d[4]))
    else:
        img = sitk.GetImageFromArray(array)
        img.SetSpacing(tuple(reversed(geometry.spacing)))
        img.SetOrigin(geometry.origin)
        img.SetDirection(geometry.direction)
    return img


def write_sitk_image(img: sitk.Image, path: Path) -> None:
    """Write a SimpleITK image atomically (compressed; the suffix picks the format).

    SimpleITK picks the format from the file name, so the temp file keeps it, inside a
    hidden temp folder: a leftover of a killed run never matches a reader's "*.nii.gz".
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=".tmp_", dir=path.parent))
    try:
        tmp = tmp_dir / path.name
        sitk.WriteImage(img, str(tmp), useCompression=True)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
