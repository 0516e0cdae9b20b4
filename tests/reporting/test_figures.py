"""PNG writing is headless and atomic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autojoint.reporting.figures import new_figure, save_png, save_rgb_png


def test_save_png_writes_a_decodable_png_of_the_requested_size(tmp_path: Path) -> None:
    import SimpleITK as sitk

    fig = new_figure(3.0, 2.0, dpi=50)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(np.arange(5), np.arange(5) ** 2)
    out = save_png(fig, tmp_path / "sub" / "plot.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    size = sitk.ReadImage(str(out)).GetSize()
    assert size[:2] == (150, 100)
    assert [p.name for p in out.parent.iterdir()] == ["plot.png"]


def test_failed_render_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fig = new_figure()

    def boom(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("render failed")

    monkeypatch.setattr(fig, "savefig", boom)
    with pytest.raises(RuntimeError):
        save_png(fig, tmp_path / "plot.png")
    assert list(tmp_path.iterdir()) == []


def test_save_rgb_png_keeps_every_pixel(tmp_path: Path) -> None:
    import SimpleITK as sitk

    rgb = np.random.default_rng(0).integers(0, 256, (7, 5, 3)).astype(np.uint8)
    out = save_rgb_png(rgb, tmp_path / "picture.png")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out))), rgb)
    assert [p.name for p in tmp_path.iterdir()] == ["picture.png"]
    with pytest.raises(ValueError, match="uint8"):
        save_rgb_png(rgb.astype(float), tmp_path / "float.png")
