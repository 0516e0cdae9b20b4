"""matplotlib without pyplot: no global state, no display, atomic PNG files.

Every picture autojoint writes goes through here so that a headless server (no DISPLAY) and a
crash halfway through a save behave the same everywhere.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from autojoint.io.files import atomic_write


def new_figure(width_in: float = 6.0, height_in: float = 4.0, dpi: int = 100) -> Figure:
    """A figure bound to the Agg canvas; pyplot (and its backend selection) is never imported."""
    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: Path) -> Path:
    """Render ``fig`` to ``path`` atomically (temp file + rename)."""
    path = Path(path)
    atomic_write(path, lambda fh: fig.savefig(fh, format="png"), binary=True)
    return path


def save_rgb_png(rgb: np.ndarray, path: Path) -> Path:
    """Write an RGB picture pixel for pixel (no axes, no resampling) atomically.

    Shape:
        rgb ``(H, W, 3)`` uint8.

    Raises:
        ValueError: ``rgb`` is not an ``(H, W, 3)`` uint8 array.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 array, got {rgb.shape} {rgb.dtype}")
    path = Path(path)
    atomic_write(path, lambda fh: Image.fromarray(rgb).save(fh, format="PNG"), binary=True)
    return path
