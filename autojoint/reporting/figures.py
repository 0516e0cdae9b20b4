"""matplotlib without pyplot: no global state, no display, atomic PNG files.

Every picture autojoint writes goes through here so that a headless server (no DISPLAY) and a
crash halfway through a save behave the same everywhere.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

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
