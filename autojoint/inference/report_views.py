"""The pictures of the prediction report: axial, coronal and sagittal slices of a case in
the radiological orientation, with the lesion labels or the evidence map laid over the scan.

Pictures are composed as RGB arrays pixel by pixel (no plotting), on square pixels: a
slice is resampled by nearest neighbour to the finer of its two spacings, so a coronal
view of 5 mm slices shows each slice as the band it is rather than a smoothed guess.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import to_rgb

from autojoint.inference.lung import anatomical_order
from autojoint.inference.montage import CONTOUR_COLOURS, LUNG_WINDOW_HU
from autojoint.io.image_io import ImageGeometry

VIEWS = ("axial", "coronal", "sagittal")
MAX_PIXELS = 512  # longest side of a view picture
THUMBNAIL_PIXELS = 160
LABEL_ALPHA = 0.35  # label fill over the scan; the outline is drawn opaque
EVIDENCE_ALPHA = 0.5  # at evidence 1; scaled by the evidence so 0 leaves the scan visible
WINDOW_NOTE_CT = (
    f"CT in lung window (W {LUNG_WINDOW_HU[1] - LUNG_WINDOW_HU[0]:g} / "
    f"L {(LUNG_WINDOW_HU[0] + LUNG_WINDOW_HU[1]) / 2:g} HU)"
)
WINDOW_NOTE_OTHER = "Scan intensities windowed to their 0.5-99.5 percentiles"


@dataclass(frozen=True)
class ViewGeometry:
    """Where a view cuts the volume and how its picture is laid out.

    Attributes:
        slice_axis, row_axis, col_axis: array axes ``(Z, Y, X)`` of the cut, the
            picture's rows and its columns.
        flip_rows, flip_cols: reverse rows/columns to reach the radiological orientation
            (anterior up in axial, head up in coronal and sagittal, the patient's right on
            the picture's left, anterior on the left in sagittal).
    """

    slice_axis: int
    row_axis: int
    col_axis: int
    flip_rows: bool
    flip_cols: bool


def _index_sign(geometry: ImageGeometry, array_axis: int) -> float:
    """+1 if the physical coordinate this array axis mostly follows (LPS) grows with the
    index, -1 if it shrinks."""
    d = np.asarray(geometry.direction, dtype=float).reshape(3, 3)
    column = d[:, 2 - array_axis]  # image axis i is array axis 2 - i
    return float(np.sign(column[int(np.argmax(np.abs(column)))]) or 1.0)


def view_geometry(geometry: ImageGeometry, view: str) -> ViewGeometry:
    """The cut and orientation of ``view`` (one of :data:`VIEWS`) for any stored
    orientation (direction matrix) of the volume.

    Raises:
        ValueError: an unknown view.
    """
    head_feet, front_back, left_right = anatomical_order(geometry)
    # LPS: x grows to the patient's left, y to posterior, z to the head. Pictures want
    # columns towards the left (x+) or posterior (y+), rows towards posterior (y+) or feet.
    layouts = {
        "axial": (head_feet, front_back, left_right, 1.0, 1.0),
        "coronal": (front_back, head_feet, left_right, -1.0, 1.0),
        "sagittal": (left_right, head_feet, front_back, -1.0, 1.0),
    }
    if view not in layouts:
        raise ValueError(f"unknown view '{view}'; choose one of {', '.join(VIEWS)}.")
    cut, rows, cols, row_want, col_want = layouts[view]
    return ViewGeometry(
        slice_axis=cut,
        row_axis=rows,
        col_axis=cols,
        flip_rows=_index_sign(geometry, rows) != row_want,
        flip_cols=_index_sign(geometry, cols) != col_want,
    )


def views_of(geometry: ImageGeometry) -> tuple[str, ...]:
    """The views a case has: a 2D image (one slice) has only its own plane."""
    return VIEWS[:1] if geometry.is_2d or min(geometry.shape) == 1 else VIEWS


def pick_slice(mask: np.ndarray, evidence: np.ndarray | None, axis: int) -> int:
    """The slice along ``axis`` with the most lesion voxels; without lesions the one with
    the most evidence; else the middle one.

    Shape:
        mask, evidence ``(Z, Y, X)``.
    """
    other = tuple(a for a in range(3) if a != axis)
    counts = np.count_nonzero(mask > 0, axis=other)
    if counts.any():
        return int(np.argmax(counts))
    if evidence is not None:
        mass = evidence.sum(axis=other)
        if mass.max() > 0:
            return int(np.argmax(mass))
    return mask.shape[axis] // 2


def view_slice(
    volume: np.ndarray, geometry: ImageGeometry, view: ViewGeometry, index: int
) -> np.ndarray:
    """The 2D picture of ``volume`` at ``index`` along the view's cut, oriented, on square
    pixels of at most :data:`MAX_PIXELS` per side (nearest neighbour; dtype kept).

    Shape:
        volume ``(Z, Y, X)`` -> ``(H, W)``.
    """
    plane = np.take(volume, index, axis=view.slice_axis)
    # np.take drops the cut axis; the remaining axes keep their order.
    if view.row_axis > view.col_axis:
        plane = plane.T
    if view.flip_rows:
        plane = plane[::-1]
    if view.flip_cols:
        plane = plane[:, ::-1]
    row_mm, col_mm = geometry.spacing[view.row_axis], geometry.spacing[view.col_axis]
    height_mm, width_mm = plane.shape[0] * row_mm, plane.shape[1] * col_mm
    pixel_mm = max(min(row_mm, col_mm), max(height_mm, width_mm) / MAX_PIXELS)
    rows = _nearest(plane.shape[0], row_mm, pixel_mm)
    cols = _nearest(plane.shape[1], col_mm, pixel_mm)
    return plane[np.ix_(rows, cols)]


def _nearest(size: int, spacing_mm: float, pixel_mm: float) -> np.ndarray:
    """Source indices of the output pixels' centres along one axis."""
    count = max(1, int(round(size * spacing_mm / pixel_mm)))
    centres = (np.arange(count) + 0.5) * pixel_mm / spacing_mm
    return np.clip(centres.astype(int), 0, size - 1)


def grey_rgb(plane: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """The scan as grey RGB in [0, 1] for a display window ``(low, high)``.

    Shape:
        plane ``(H, W)`` -> ``(H, W, 3)`` float.
    """
    low, high = window
    grey = np.clip((plane.astype(float) - low) / max(high - low, 1e-6), 0.0, 1.0)
    return np.repeat(grey[..., None], 3, axis=2)


def _outline(region: np.ndarray) -> np.ndarray:
    """Pixels of ``region`` with a 4-neighbour outside it (or on the picture's edge)."""
    padded = np.pad(region, 1, constant_values=False)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:] & region
    return region & ~inner


def label_colours(num_labels: int) -> list[tuple[float, float, float]]:
    """RGB in [0, 1] of lesion labels 1..num_labels, the evidence montage's colours."""
    return [to_rgb(CONTOUR_COLOURS[i % len(CONTOUR_COLOURS)]) for i in range(num_labels)]


def overlay_labels(
    rgb: np.ndarray, labels: np.ndarray, values: list[int], *, fill: bool = True
) -> np.ndarray:
    """Lay each lesion label (``values``, in colour order) over the picture: a translucent
    fill (if ``fill``) and an opaque outline.

    Shape:
        rgb ``(H, W, 3)`` float, labels ``(H, W)`` -> ``(H, W, 3)`` float.
    """
    out = rgb.copy()
    for value, colour in zip(values, label_colours(len(values)), strict=True):
        region = labels == value
        if fill:
            out[region] = (1 - LABEL_ALPHA) * out[region] + LABEL_ALPHA * np.array(colour)
        out[_outline(region)] = colour
    return out


def overlay_evidence(rgb: np.ndarray, evidence: np.ndarray) -> np.ndarray:
    """Blend the evidence map (in [0, 1]) as a heat map whose opacity grows with it.

    Shape:
        rgb ``(H, W, 3)`` float, evidence ``(H, W)`` -> ``(H, W, 3)`` float.
    """
    ev = np.clip(evidence.astype(float), 0.0, 1.0)
    heat = colormaps["jet"](ev)[..., :3]
    alpha = (EVIDENCE_ALPHA * ev)[..., None]
    return (1 - alpha) * rgb + alpha * heat


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """[0, 1] floats to 0-255 bytes (rounded)."""
    return np.round(np.clip(rgb, 0.0, 1.0) * 255).astype(np.uint8)


def thumbnail(rgb: np.ndarray) -> np.ndarray:
    """A picture shrunk (every n-th pixel) to at most :data:`THUMBNAIL_PIXELS` per side.

    Shape:
        ``(H, W, 3)`` -> ``(h, w, 3)``.
    """
    step = max(1, int(np.ceil(max(rgb.shape[:2]) / THUMBNAIL_PIXELS)))
    return rgb[::step, ::step]
