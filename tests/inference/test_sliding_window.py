"""Sliding-window prediction: a voxel-wise model must give the same answer tiled or whole."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from autojoint.inference import sliding_window
from autojoint.inference.sliding_window import (
    accumulation_dtype,
    gaussian_importance,
    mirror_boxes,
    mirror_combinations,
    network_probabilities,
    predict_mirrored,
    sliding_window_predict,
    tile_boxes,
    tile_starts,
)
from autojoint.networks.cross_stitch import crop_box
from autojoint.networks.joint_net import JointNet


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


# --- batching, mirroring TTA, accumulation and out-of-memory fallback -------------------------


def test_mirror_combinations_known_answer() -> None:
    assert mirror_combinations(()) == [()]
    assert mirror_combinations((2, 0)) == [(), (0,), (2,), (0, 2)]
    assert len(mirror_combinations((0, 1, 2))) == 8


def _symmetric_conv(seed: int = 0) -> torch.nn.Conv3d:
    """A 3x3x3 convolution whose kernels are symmetric under flipping every axis, with
    symmetric zero padding: it commutes with mirroring (mirror-equivariant)."""
    torch.manual_seed(seed)
    conv = torch.nn.Conv3d(1, 3, 3, padding=1)
    with torch.no_grad():
        w = conv.weight
        for d in (2, 3, 4):
            w.copy_((w + torch.flip(w, (d,))) / 2)
    return conv.eval()


@torch.no_grad()
def test_tta_of_mirror_equivariant_network_changes_nothing() -> None:
    conv = _symmetric_conv()
    data = np.random.default_rng(2).normal(size=(1, 13, 21, 17)).astype(np.float32)
    plain = sliding_window_predict(conv, data, (8, 12, 10), 3, show_progress=False)
    tta = sliding_window_predict(
        conv, data, (8, 12, 10), 3, show_progress=False, mirror_axes=(0, 1, 2)
    )
    np.testing.assert_allclose(tta, plain, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_tta_is_the_mean_over_flipped_copies() -> None:
    """A network that is not mirror-equivariant: TTA gives the mean of its flipped-back
    predictions (reference computed directly on one whole-volume tile)."""
    torch.manual_seed(3)
    conv = torch.nn.Conv3d(1, 2, 3, padding=1).eval()
    data = np.random.default_rng(3).normal(size=(1, 6, 8, 8)).astype(np.float32)
    x = torch.from_numpy(data)[None]
    reference = (conv(x) + torch.flip(conv(torch.flip(x, (3,))), (3,))) / 2
    out = sliding_window_predict(conv, data, (6, 8, 8), 2, show_progress=False, mirror_axes=(1,))
    np.testing.assert_allclose(out, reference[0].numpy(), rtol=1e-5, atol=1e-6)
    plain = sliding_window_predict(conv, data, (6, 8, 8), 2, show_progress=False)
    assert not np.allclose(out, plain, atol=1e-4)  # the test can see a wrong TTA


@pytest.mark.parametrize("tile_batch", [2, 3, 64])
def test_batched_tiles_equal_unbatched(tile_batch: int) -> None:
    conv = _symmetric_conv(1)
    data = np.random.default_rng(4).normal(size=(1, 11, 27, 19)).astype(np.float32)
    calls: list[int] = []

    @torch.no_grad()
    def predict(t: torch.Tensor) -> torch.Tensor:
        calls.append(t.shape[0])
        return conv(t)

    single = sliding_window_predict(predict, data, (6, 10, 8), 3, show_progress=False)
    num_tiles = len(calls)
    calls.clear()
    batched = sliding_window_predict(
        predict, data, (6, 10, 8), 3, show_progress=False, tile_batch=tile_batch
    )
    assert sum(calls) == num_tiles and max(calls) == min(tile_batch, num_tiles)
    np.testing.assert_allclose(batched, single, rtol=1e-5, atol=1e-6)


def test_joint_network_batched_equals_unbatched(tmp_path) -> None:
    """A real joint network (instance norm) tiles the same in batches of 4 as one by one,
    with and without TTA."""
    from tests.inference.tiny_workdir import make_tiny_workdir

    _, _, plan = make_tiny_workdir(tmp_path, num_cases=3, folds=())
    torch.manual_seed(0)
    net = JointNet(plan).eval()
    shape = [plan.patch_size[0] + 3, plan.patch_size[1], plan.patch_size[2] + 5]  # 4 tiles
    data = np.random.default_rng(5).normal(size=(1, *shape)).astype(np.float32)
    with torch.no_grad():
        for axes in ((), (2,)):
            one = network_probabilities(net, data, plan.patch_size, 3, mirror_axes=axes)
            four = network_probabilities(
                net, data, plan.patch_size, 3, tile_batch=4, mirror_axes=axes
            )
            np.testing.assert_allclose(four, one, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(one.sum(axis=0), 1.0, atol=1e-5)


def test_accumulation_is_half_precision_on_cuda_only() -> None:
    assert accumulation_dtype(torch.device("cuda", 0)) == torch.float16
    assert accumulation_dtype(torch.device("cpu")) == torch.float32


def test_out_of_memory_falls_back_to_cpu_buffers(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A fake out-of-memory error on the first buffer allocation: the case is redone with
    float32 CPU buffers and gives the same result, with a warning."""
    data = np.random.default_rng(6).normal(size=(1, 9, 20, 14)).astype(np.float32)
    expected = sliding_window_predict(_pointwise, data, (6, 10, 8), 3, show_progress=False)
    real_zeros = sliding_window._zeros
    failures = [1]
    buffers: list[tuple[torch.device, torch.dtype]] = []

    def flaky_zeros(shape, device, dtype):  # type: ignore[no-untyped-def]
        if failures:
            failures.pop()
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        buffers.append((device, dtype))
        return real_zeros(shape, device, dtype)

    monkeypatch.setattr(sliding_window, "_zeros", flaky_zeros)
    with caplog.at_level("WARNING"):
        out = sliding_window_predict(_pointwise, data, (6, 10, 8), 3, show_progress=False)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert buffers and all(d.type == "cpu" and t == torch.float32 for d, t in buffers)
    assert "out of memory" in caplog.text and "CPU buffers" in caplog.text


def test_out_of_memory_in_the_network_is_retried_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """An OOM raised by the network mid-case also triggers the CPU-buffer retry; an error
    that is not an OOM propagates unchanged."""
    data = np.random.default_rng(7).normal(size=(1, 9, 20, 14)).astype(np.float32)
    calls = [0]

    def oom_on_third(t: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        if calls[0] == 3:
            raise torch.OutOfMemoryError("CUDA out of memory.")
        return _pointwise(t)

    out = sliding_window_predict(oom_on_third, data, (6, 10, 8), 3, show_progress=False)
    np.testing.assert_allclose(out, _pointwise(torch.from_numpy(data)[None])[0].numpy(), atol=1e-5)

    def broken(t: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        sliding_window_predict(broken, data, (6, 10, 8), 3, show_progress=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_half_accumulation_matches_cpu() -> None:
    data = np.random.default_rng(8).normal(size=(1, 13, 21, 17)).astype(np.float32)

    def probs(t: torch.Tensor) -> torch.Tensor:
        return torch.softmax(_pointwise(t), dim=1)

    cpu = sliding_window_predict(probs, data, (8, 12, 10), 3, show_progress=False)
    gpu = sliding_window_predict(
        probs, data, (8, 12, 10), 3, show_progress=False, device="cuda", tile_batch=4
    )
    np.testing.assert_allclose(gpu, cpu, atol=2e-3)


class _ViewEcho:
    """A stand-in joint network whose segmentation logits are the view cropped at each
    tile's box, or (without a box) the whole view squeezed into the tile."""

    eta = (1.0,)

    def seg(self, x: torch.Tensor, context=None, box=None) -> list[torch.Tensor]:  # type: ignore[no-untyped-def]
        assert context is not None
        size = x.shape[2:]
        if box is None:
            return [torch.nn.functional.interpolate(context, size=size, mode="trilinear")]
        return [crop_box(context, box, size)]

    def fused_probabilities(self, scales: list[torch.Tensor]) -> torch.Tensor:
        """As ``JointNet.fused_probabilities`` with one scale and the softmax fusion."""
        return torch.softmax(scales[0], dim=1)


@pytest.mark.parametrize(
    ("shape", "axes"),
    [((11, 20, 14), ()), ((11, 20, 14), (0, 1, 2)), ((5, 20, 7), (2,)), ((13, 17, 29), (1,))],
    ids=["plain", "tta", "smaller_tta", "odd_tta"],
)
def test_each_window_sees_the_view_at_its_own_place(shape, axes) -> None:  # type: ignore[no-untyped-def]
    """With every tile cropping the view at its box (mirrored tiles mirrored crops), a model
    that echoes the view gives the view resampled to the case, whatever the tiling, the
    batching and the mirroring."""
    view = torch.randn(1, 3, 6, 9, 8)
    data = np.zeros((1, *shape), np.float32)
    expected = torch.softmax(
        torch.nn.functional.interpolate(view, size=shape, mode="trilinear"), dim=1
    )[0].numpy()
    for tile_batch in (1, 3):
        out = network_probabilities(
            _ViewEcho(),  # type: ignore[arg-type]
            data,
            (6, 8, 8),
            3,
            context=view,
            tile_batch=tile_batch,
            mirror_axes=axes,
        )
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_cross_stitch_tiles_get_their_boxes_and_mirrored_tiles_flipped_crops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A real cross-stitch network: the stem's crop is called with each tile's own box, and
    the mirrored pass of a tile with the box mirrored, which crops the mirrored features."""
    import dataclasses

    from autojoint.networks import cross_stitch
    from autojoint.planning.schema import NetworkOptions
    from tests.fingerprints import tiny_plan

    plan = dataclasses.replace(
        tiny_plan(shape=(8, 16, 16)), network=NetworkOptions(cross_stitch=True)
    )
    torch.manual_seed(0)
    net = JointNet(plan).eval()
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def spy(features: torch.Tensor, box: torch.Tensor, size) -> torch.Tensor:  # type: ignore[no-untyped-def]
        out = crop_box(features, box, size)
        calls.append((box.clone(), out.clone()))
        return out

    monkeypatch.setattr(cross_stitch, "crop_box", spy)
    shape = (10, 16, 27)  # 2 x 1 x 3 tiles of (8, 16, 16)
    data = np.random.default_rng(0).normal(size=(1, *shape)).astype(np.float32)
    view = torch.randn(1, 1, *plan.classification_shape)
    with torch.no_grad():
        network_probabilities(net, data, plan.patch_size, 3, context=view, mirror_axes=(2,))
    z, y, x = [tile_starts(s, p, 0.5) for s, p in zip(shape, plan.patch_size, strict=True)]
    assert (z, y, x) == ([0, 2], [0], [0, 6, 11])
    starts = [(a, b, c) for a in z for b in y for c in x]
    expected = tile_boxes(starts, plan.patch_size, shape)
    assert len(calls) == 2 * len(starts)  # one plain and one mirrored pass per tile
    for i in range(len(starts)):
        (box, crop), (mirrored_box, mirrored_crop) = calls[2 * i], calls[2 * i + 1]
        torch.testing.assert_close(box, expected[i : i + 1])
        torch.testing.assert_close(mirrored_box, mirror_boxes(expected[i : i + 1], (2,)))
        torch.testing.assert_close(mirrored_crop, crop.flip(4), rtol=1e-5, atol=1e-6)
    # Without a view the stem crops nothing (segmentation from the patch alone).
    calls.clear()
    with torch.no_grad():
        network_probabilities(net, data, plan.patch_size, 3)
    assert calls == []


def test_mirroring_skips_one_voxel_axes() -> None:
    """A 2D plan's tiles are one slice thick: mirroring that axis is the identity, so it
    costs no pass and the mean equals mirroring the in-plane axes only."""
    torch.manual_seed(0)
    tiles = torch.randn(2, 1, 1, 6, 5)
    calls = []

    def predict(x: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return torch.cat([x, x.cumsum(-1)], dim=1)

    both = predict_mirrored(predict, tiles, (0, 1, 2))
    assert len(calls) == 4  # (), (1,), (2,), (1, 2)
    torch.testing.assert_close(both, predict_mirrored(predict, tiles, (1, 2)), rtol=0, atol=0)
