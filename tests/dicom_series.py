"""Tiny synthetic DICOM series written with SimpleITK: one file per slice, with the tags a
test needs to make a folder good or bad (several series, uneven spacing, a missing slice,
gantry tilt, another modality)."""

from __future__ import annotations

import itertools
import locale
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
_COUNTER = itertools.count(1)


def new_uid() -> str:
    """A valid, unique UID (digits and dots) under a test root."""
    return f"1.2.826.0.1.3680043.10.1234.{next(_COUNTER)}"


def write_series(
    folder: Path,
    volume: np.ndarray,
    *,
    spacing: tuple[float, float, float] = (2.0, 0.75, 0.75),
    origin: tuple[float, float, float] = (-10.0, 20.0, 30.0),
    orientation: Sequence[float] = AXIAL,
    positions: Sequence[float] | None = None,
    shift_per_slice: tuple[float, float, float] = (0.0, 0.0, 0.0),
    modality: str = "CT",
    series_uid: str | None = None,
    study_uid: str = "1.2.826.0.1.3680043.10.1234.999",
    description: str = "",
    prefix: str = "slice",
) -> list[Path]:
    """Write ``volume`` ``(Z, Y, X)`` int16 as one DICOM file per slice into ``folder``.

    Slice ``k`` lies at ``origin + positions[k] * normal + k * shift_per_slice`` (mm, LPS),
    ``positions`` defaulting to ``k * spacing[0]``; a non-zero ``shift_per_slice`` across
    the plane is a gantry tilt. Returns the files in slice order.
    """
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or new_uid()
    frame_uid = new_uid()
    row, col = np.array(orientation[:3]), np.array(orientation[3:])
    normal = np.cross(row, col)
    z = [k * spacing[0] for k in range(volume.shape[0])] if positions is None else positions
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    files = []
    for k in range(volume.shape[0]):
        sl = sitk.GetImageFromArray(volume[k].astype(np.int16))
        sl.SetSpacing((spacing[2], spacing[1]))
        position = np.array(origin) + z[k] * normal + k * np.array(shift_per_slice)
        for tag, value in (
            ("0008|0060", modality),
            ("0008|103e", description),
            ("0020|000d", study_uid),
            ("0020|000e", series_uid),
            ("0020|0052", frame_uid),
            ("0008|0018", new_uid()),
            ("0020|0013", str(k + 1)),
            ("0020|0032", "\\".join(f"{v:.4f}" for v in position)),
            ("0020|0037", "\\".join(f"{v:g}" for v in orientation)),
            ("0018|0050", f"{spacing[0]:g}"),
            ("0028|0030", f"{spacing[1]:g}\\{spacing[2]:g}"),
        ):
            sl.SetMetaData(tag, value)
        path = folder / f"{prefix}_{k:03d}.dcm"
        writer.SetFileName(str(path))
        _write_keeping_locale(writer, sl)
        files.append(path)
    return files


def _write_keeping_locale(writer: sitk.ImageFileWriter, image: sitk.Image) -> None:
    """SimpleITK's DICOM writer (GDCM) leaves the process in the C locale, after which
    ``open``/``read_text`` without an encoding read ASCII and later tests failed on UTF-8
    docs, depending on the test order; restore the locale it found."""
    saved = locale.setlocale(locale.LC_ALL)
    try:
        writer.Execute(image)
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def ramp(shape: tuple[int, int, int] = (6, 16, 20)) -> np.ndarray:
    """A volume whose every voxel differs (so a slice out of order would show)."""
    return (np.arange(np.prod(shape)).reshape(shape) % 2000 - 1000).astype(np.int16)
