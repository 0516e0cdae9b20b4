"""Load one case's channels and mask, checking they share one grid and valid label values."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from autojoint.io.image_io import (
    DIRECTION_ATOL,
    ORIGIN_ATOL_MM,
    SPACING_RTOL,
    ImageGeometry,
    ImageReadError,
    read_image,
)


def load_channels(paths: Sequence[Path]) -> tuple[np.ndarray, ImageGeometry]:
    """Read all channel files of a case into ``(C, Z, Y, X)`` float32.

    Raises:
        ImageReadError: unreadable file, or channels on different grids.
    """
    arrays, geometry = [], None
    for p in paths:
        arr, geo = read_image(p)
        if geometry is None:
            geometry = geo
        elif not geometry.matches(geo):
            raise ImageReadError(
                f"{p}: grid {geo.shape} @ {geo.spacing} ({geo.num_dims}D) differs from "
                f"{paths[0]} ({geometry.shape} @ {geometry.spacing}, {geometry.num_dims}D); "
                "resample all channels to one grid of one dimensionality."
            )
        arrays.append(arr)
    if geometry is None:
        raise ImageReadError("no image files given for this case.")
    return np.stack(arrays), geometry


# Tolerances of ImageGeometry.matches, spelled out for messages and docs/robustness.md.
GEOMETRY_TOLERANCES = (
    f"spacing within {SPACING_RTOL * 100:g} %, origin within {ORIGIN_ATOL_MM:g} mm, "
    f"direction cosines within {DIRECTION_ATOL:g}"
)


def geometry_differences(geo: ImageGeometry, ref: ImageGeometry) -> list[str]:
    """Which of size, spacing, origin and direction differ (same tolerances as
    :meth:`ImageGeometry.matches`), each as ``"name a vs b"``."""
    out = []
    if geo.is_2d != ref.is_2d:
        out.append(f"dimensionality {geo.num_dims}D vs {ref.num_dims}D")
    if geo.shape != ref.shape:
        out.append(f"size {geo.shape} vs {ref.shape}")
    if not np.allclose(geo.spacing, ref.spacing, rtol=SPACING_RTOL, atol=0.0):
        out.append(f"spacing {geo.spacing} vs {ref.spacing}")
    if not np.allclose(geo.origin, ref.origin, rtol=0.0, atol=ORIGIN_ATOL_MM):
        out.append(f"origin {geo.origin} vs {ref.origin}")
    if not np.allclose(geo.direction, ref.direction, rtol=0.0, atol=DIRECTION_ATOL):
        out.append(f"direction {geo.direction} vs {ref.direction}")
    return out


def label_value_problems(path: Path, arr: np.ndarray, num_labels: int) -> list[str]:
    """Messages for mask values that are not label ids declared in dataset.json."""
    if not np.all(arr == np.round(arr)):
        return [f"{path}: mask has non-integer values; masks must hold label ids."]
    values = np.unique(arr).astype(np.int64)
    bad = [int(v) for v in values if v < 0 or v >= num_labels]
    if bad:
        return [
            f"{path}: label values {bad} are not declared in dataset.json 'labels' "
            f"(valid: 0..{num_labels - 1}); fix the mask or declare the labels."
        ]
    return []


def load_label(path: Path, image_geometry: ImageGeometry, num_labels: int) -> np.ndarray:
    """Read a mask and check it against its image; returns ``(Z, Y, X)`` uint8.

    Args:
        path: mask file.
        image_geometry: the case image's geometry the mask must match.
        num_labels: number of label values including background (values 0..num_labels-1).

    Raises:
        ImageReadError: geometry mismatch, non-integer or out-of-range values.
    """
    arr, geo = read_image(path, dtype=np.float64)
    if not geo.matches(image_geometry):
        raise ImageReadError(
            f"{path}: mask grid ({geo.num_dims}D, shape {geo.shape}, spacing {geo.spacing}, "
            f"origin {geo.origin}) does not match its image ({image_geometry.num_dims}D, shape "
            f"{image_geometry.shape}, spacing {image_geometry.spacing}, origin "
            f"{image_geometry.origin}): {'; '.join(geometry_differences(geo, image_geometry))} "
            f"(tolerances: {GEOMETRY_TOLERANCES}). Resample the mask onto the image grid with "
            "nearest-neighbour interpolation (a 2D image needs a 2D mask)."
        )
    problems = label_value_problems(path, arr, num_labels)
    if problems:
        raise ImageReadError(problems[0])
    return arr.astype(np.uint8)
