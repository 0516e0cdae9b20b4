"""A PNG montage per case so a clinician can look rather than read: axial slices through
the lesion-richest region, lung-window CT, evidence heat map and lesion contours."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autojoint.inference.lung import axial_axis
from autojoint.io.image_io import ImageGeometry
from autojoint.reporting.figures import new_figure, save_png

# Lung window (level -600 HU, width 1500 HU).
LUNG_WINDOW_HU = (-1350.0, 150.0)
CONTOUR_COLOURS = ("lime", "cyan", "magenta", "yellow", "orange", "white")


def montage_slices(mask: np.ndarray, evidence: np.ndarray | None, axis: int, n: int) -> list[int]:
    """Up to ``n`` slice indices along ``axis`` placed at the quantiles of the lesion mass
    (so they crowd where lesions are most), else of the evidence mass, else evenly.

    Shape:
        mask, evidence ``(Z, Y, X)``.
    """
    other = tuple(a for a in range(3) if a != axis)
    size = mask.shape[axis]
    weights = np.count_nonzero(mask > 0, axis=other).astype(float)
    if weights.sum() == 0 and evidence is not None:
        weights = evidence.sum(axis=other).astype(float)
    if weights.sum() == 0:
        return sorted({int(round(v)) for v in np.linspace(0, size - 1, min(n, size))})
    cdf = np.cumsum(weights) / weights.sum()
    picks = np.searchsorted(cdf, (np.arange(n) + 0.5) / n)
    return sorted({int(min(p, size - 1)) for p in picks})


def display_range(image: np.ndarray, is_ct: bool) -> tuple[float, float]:
    """The lung window for CT, the 0.5-99.5 percentiles of the image otherwise."""
    if is_ct:
        return LUNG_WINDOW_HU
    lo, hi = np.percentile(image, [0.5, 99.5])
    return float(lo), float(max(hi, lo + 1e-6))


def write_montage(
    path: Path,
    image: np.ndarray,
    mask: np.ndarray,
    evidence: np.ndarray | None,
    geometry: ImageGeometry,
    *,
    title: str,
    label_names: dict[int, str],
    is_ct: bool = True,
    num_slices: int = 6,
) -> Path:
    """Write the montage PNG atomically.

    Args:
        path: output ``.png``.
        image: first channel of the scan on the input grid.
        mask: predicted labels on the same grid.
        evidence: evidence map in [0, 1] on the same grid (None: no heat map).
        geometry: the grid, to find the axial axis and the pixel aspect.
        title: figure title (case, diagnosis, probability).
        label_names: lesion label value -> name for the legend.

    Shape:
        image, mask, evidence ``(Z, Y, X)``.
    """
    axis = axial_axis(geometry)
    slices = montage_slices(mask, evidence, axis, num_slices)
    in_plane = [a for a in range(3) if a != axis]
    aspect = geometry.spacing[in_plane[0]] / geometry.spacing[in_plane[1]]
    vmin, vmax = display_range(image, is_ct)
    fig = new_figure(2.6 * len(slices), 3.0, dpi=100)
    fig.suptitle(title, fontsize=9)
    for i, s in enumerate(slices):
        ax = fig.add_subplot(1, len(slices), i + 1)
        img2d = np.take(image, s, axis=axis)
        ax.imshow(img2d, cmap="gray", vmin=vmin, vmax=vmax, aspect=aspect, interpolation="none")
        if evidence is not None:
            ev = np.take(evidence, s, axis=axis)
            ax.imshow(ev, cmap="jet", vmin=0.0, vmax=1.0, alpha=0.45 * ev, aspect=aspect)
        lab2d = np.take(mask, s, axis=axis)
        for j, value in enumerate(sorted(label_names)):
            region = (lab2d == value).astype(float)
            if 0 < region.sum() < region.size:  # contour() warns on a constant slice
                ax.contour(
                    region,
                    levels=[0.5],
                    colors=CONTOUR_COLOURS[j % len(CONTOUR_COLOURS)],
                    linewidths=0.8,
                )
        ax.set_title(f"slice {s}", fontsize=7)
        ax.set_axis_off()
    legend = ", ".join(
        f"{name}: {CONTOUR_COLOURS[j % len(CONTOUR_COLOURS)]}"
        for j, (_, name) in enumerate(sorted(label_names.items()))
    )
    fig.text(0.5, 0.02, f"contours {legend}; heat map = evidence", ha="center", fontsize=7)
    return save_png(fig, path)
