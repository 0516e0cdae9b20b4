"""Sliding-window prediction: a voxel-wise model must give the same answer tiled or whole."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from autojoint.inference.sliding_window import (
    gaussian_importance,
    sliding_window_predict,
    tile_starts,
)


def _pointwise(t: torch.Tensor) -> torch.Tensor:
    return torch.cat([t, -t, t * t], dim=1)


@pytest.fixture(scope="module")
def conv1x1() -> torch.nn.Conv3d:
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(2, 3, 1)
    conv.eval()
    return conv


@pytest.mark.parametrize(
    "shape",
    [(20, 40, 36), (5, 7, 9), (13, 17, 29), (8, 16, 16), (3, 40, 11)],
    ids=["larger", "smaller", "non-divisible", "equal", "mixed"],
)
def test_pointwise_model_tiled_equals_whole(shape: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(size=(1, *shape)).astype(np.float32)
    out = sliding_window_predict(_pointwise, data, (8, 16, 16), 3, show_progress=False)
    assert out.shape == (3, *shape) and out.dtype == np.float32
    expected = _pointwise(torch.from_numpy(data)[None])[0].numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("step_fraction", [0.5, 0.33, 1.0])
def test_conv1x1_tiled_equals_whole(conv1x1: torch.nn.Conv3d, step_fraction: float) -> None:
    rng = np.random.default_rng(1)
    data = rng.normal(size=(2, 11, 27, 19)).astype(np.float32)

    @torch.no_grad()
    def predict(t: torch.Tensor) -> torch.Tensor:
        return conv1x1(t)

    out = sliding_window_predict(
        predict, data, (6, 10, 8), 3, step_fraction=step_fraction, show_progress=False
    )
    expected = predict(torch.from_numpy(data)[None])[0].numpy()
    torch.testing.assert_close(
        torch.from_numpy(out), torch.from_numpy(expected), rtol=1e-5, atol=1e-5
    )


def test_small_volume_is_padded_with_its_minimum() -> None:
    data = np.arange(2 * 3 * 4, dtype=np.float32).reshape(1, 2, 3, 4) + 5.0
    seen: list[torch.Tensor] = []

    def predict(t: torch.Tensor) -> torch.Tensor:
        seen.append(t.clone())
        return t

    out = sliding_window_predict(predict, data, (4, 4, 6), 1, show_progress=False)
    assert len(seen) == 1 and tuple(seen[0].shape) == (1, 1, 4, 4, 6)
    tile = seen[0][0, 0].numpy()
    np.testing.assert_array_equal(tile[:2, :3, :4], data[0])
    mask = np.ones(tile.shape, bool)
    mask[:2, :3, :4] = False
    assert np.all(tile[mask] == data.min())
    np.testing.assert_allclose(out, data, rtol=1e-6)


def test_every_voxel_is_covered_by_some_tile() -> None:
    data = np.zeros((1, 21, 33, 18), np.float32)
    counts = np.zeros(data.shape[1:], np.int32)
    patch = (7, 12, 9)

    def predict(t: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(t)

    starts = [tile_starts(s, p, 0.5) for s, p in zip(data.shape[1:], patch, strict=True)]
    for z in starts[0]:
        for y in starts[1]:
            for x in starts[2]:
                counts[z : z + patch[0], y : y + patch[1], x : x + patch[2]] += 1
    assert counts.min() >= 1
    out = sliding_window_predict(predict, data, patch, 1, show_progress=False)
    np.testing.assert_allclose(out, 1.0, rtol=1e-6)


@pytest.mark.parametrize(
    "size,patch",
    [(10, 10), (11, 10), (64, 16), (65, 16), (100, 7), (3, 8), (17, 5), (6, 1), (9, 2)],
)
@pytest.mark.parametrize("step", [0.5, 0.25, 1.0])
def test_tile_starts_cover_the_axis(size: int, patch: int, step: float) -> None:
    starts = tile_starts(size, patch, step)
    assert starts[0] == 0
    if size <= patch:
        assert starts == [0]
        return
    assert starts[-1] == size - patch
    assert starts == sorted(set(starts))  # increasing, no duplicates
    gaps = np.diff(starts)
    assert gaps.max() <= max(patch * step, 1) + 1  # overlap >= 1 - step (up to rounding)
    covered = np.zeros(size, bool)
    for s in starts:
        covered[s : s + patch] = True
    assert covered.all()


def test_tile_starts_known_answer() -> None:
    assert tile_starts(32, 16, 0.5) == [0, 8, 16]
    assert tile_starts(20, 16, 0.5) == [0, 4]
    assert tile_starts(4, 1, 0.5) == [0, 1, 2, 3]  # one slice per tile, each once


@pytest.mark.parametrize("patch", [(8, 16, 16), (5, 9, 7), (1, 4, 4)])
def test_gaussian_importance_positive_and_peaks_at_centre(patch: tuple[int, int, int]) -> None:
    w = gaussian_importance(patch)
    assert w.shape == patch and w.dtype == np.float32
    assert np.all(w > 0)
    assert w.max() == pytest.approx(1.0)
    centre = tuple((p - 1) // 2 for p in patch)
    assert w[centre] == w.max()
    # Symmetric under flipping each axis, and decreasing away from the centre.
    for axis in range(3):
        np.testing.assert_allclose(w, np.flip(w, axis=axis), rtol=1e-6)
    if patch[2] > 2:
        line = w[centre[0], centre[1], centre[2] :]
        assert np.all(np.diff(line) <= 0) and line[-1] < line[0]
    assert w.min() < w[centre]
