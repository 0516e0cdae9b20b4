"""Augmentation presets: image and mask move together, sizes, recorded mirror axes."""

from __future__ import annotations

import multiprocessing
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
import torch
from batchgenerators.transforms.abstract_transforms import Compose
from batchgenerators.transforms.spatial_transforms import MirrorTransform

from autojoint.data.augmentation import (
    MirrorTransformWithBox,
    augmentation_spec,
    batch_iterator,
    enlarged_patch_size,
    make_batch_iterator,
    training_transforms,
    view_transforms,
)


def _blobs(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Two-valued image (0 / 1) of random boxes: its mask is ``image > 0.5``."""
    rng = np.random.default_rng(seed)
    img = np.zeros(shape, np.float32)
    for _ in range(6):
        lo = [int(rng.integers(0, s - 4)) for s in shape]
        hi = [lo_ + int(rng.integers(3, max(4, s // 2))) for lo_, s in zip(lo, shape, strict=True)]
        img[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = 1.0
    return img


def _spatial_only(spec, out, order):  # type: ignore[no-untyped-def]
    # The spatial transform and the mirror: the ones that move voxels.
    chain = view_transforms(spec, out, order=order)
    return Compose([chain[0], chain[-1]])


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (4.0, 1.0, 1.0)])
def test_mask_equals_thresholded_image_after_spatial_transforms(
    spacing: tuple[float, float, float],
) -> None:
    """With nearest-neighbour image interpolation both arrays sample the same points, so a
    mask equal to the thresholded image stays equal exactly: one set of parameters moved
    both."""
    np.random.seed(0)
    patch = (12, 16, 16)
    spec = augmentation_spec("default", patch, spacing)
    img = np.stack([_blobs(spec.loaded_patch_size, s) for s in range(8)])[:, None]
    seg = (img > 0.5).astype(np.int16)
    tr = _spatial_only(spec, patch, order=0)
    moved = 0
    for _ in range(5):  # rotation/scaling fire on 20% of samples each
        out = tr(data=img.copy(), seg=seg.copy())
        assert out["data"].shape == (8, 1, *patch) and out["seg"].shape == (8, 1, *patch)
        np.testing.assert_array_equal(out["seg"], (out["data"] > 0.5).astype(out["seg"].dtype))
        centre = tuple(
            slice((b - p) // 2, (b - p) // 2 + p)
            for b, p in zip(spec.loaded_patch_size, patch, strict=True)
        )
        moved += sum(
            not np.array_equal(out["seg"][i, 0], seg[i, 0][centre])
            and not any(
                np.array_equal(out["seg"][i, 0], np.flip(seg[i, 0][centre], axes))
                for axes in [(0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)]
            )
            for i in range(8)
        )
    assert moved > 0  # some samples were rotated or scaled, not only cropped/mirrored


def test_linear_image_stays_aligned_with_its_nearest_neighbour_mask() -> None:
    """The preset's own (linear) interpolation: image and mask disagree only on a thin
    boundary layer, never by a shift."""
    np.random.seed(1)
    patch = (12, 16, 16)
    spec = augmentation_spec("default", patch, (1.0, 1.0, 1.0))
    img = np.stack([_blobs(spec.loaded_patch_size, s) for s in range(8)])[:, None]
    out = _spatial_only(spec, patch, order=1)(data=img.copy(), seg=(img > 0.5).astype(np.int16))
    agree = np.mean((out["data"] > 0.5) == (out["seg"] > 0))
    assert agree > 0.97


def test_classification_view_is_augmented_with_its_mask_and_keeps_its_shape() -> None:
    np.random.seed(2)
    patch, view = (8, 16, 16), (8, 12, 12)
    spec = augmentation_spec("default", patch, (1.0, 1.0, 1.0))
    vimg = np.stack([_blobs(view, s) for s in range(4)])[:, None]
    chain = view_transforms(spec, view, "cls_data", "cls_seg", order=0)
    tr = Compose([chain[0], chain[-1]])
    out = tr(cls_data=vimg.copy(), cls_seg=(vimg > 0.5).astype(np.int16))
    assert out["cls_data"].shape == vimg.shape
    np.testing.assert_array_equal(out["cls_seg"], (out["cls_data"] > 0.5).astype(np.int16))
    full = training_transforms(spec, patch, view)
    assert len(full.transforms) == 2 * len(view_transforms(spec, patch))


def test_presets_record_mirror_axes_and_loaded_size() -> None:
    none = augmentation_spec("none", (8, 16, 16), (1.0, 1.0, 1.0))
    assert none.mirror_axes == () and none.loaded_patch_size == (8, 16, 16)
    assert view_transforms(none, (8, 16, 16)) == []
    light = augmentation_spec("light", (8, 16, 16), (1.0, 1.0, 1.0))
    assert light.mirror_axes == (0, 1, 2) and light.loaded_patch_size == (8, 16, 16)
    iso = augmentation_spec("default", (8, 16, 16), (1.0, 1.0, 1.0))
    thick = augmentation_spec("default", (8, 16, 16), (5.0, 1.0, 1.0))
    assert iso.rotation_axes == (0, 1, 2) and thick.rotation_axes == (0,)
    assert thick.loaded_patch_size[0] == int(np.ceil(8 / 0.7))  # no out-of-plane growth
    assert all(a >= b for a, b in zip(iso.loaded_patch_size, (8, 16, 16), strict=True))
    assert iso.to_dict()["mirror_axes"] == [0, 1, 2]
    with pytest.raises(ValueError, match="augmentation"):
        augmentation_spec("heavy", (8, 16, 16), (1.0, 1.0, 1.0))


def test_single_slice_patch_is_rotated_and_scaled_in_plane_only() -> None:
    """A 2D plan's patch (one slice) loads one slice, and the spatial transform never reads
    padding: out-of-plane rotation of a single slice would fill most of the patch with the
    border value (0 here, while every loaded pixel is >= 1)."""
    np.random.seed(3)
    patch = (1, 32, 32)
    spec = augmentation_spec("default", patch, (1.0, 1.0, 1.0))
    assert spec.rotation_axes == (0,)
    assert spec.loaded_patch_size[0] == 1 and min(spec.loaded_patch_size[1:]) > 32
    blobs = np.stack([_blobs(spec.loaded_patch_size[1:], s) for s in range(8)])
    img = (1.0 + blobs)[:, None, None]  # (8, 1, 1, Y, X), values 1 and 2
    seg = (img > 1.5).astype(np.int16)
    chain = view_transforms(spec, patch, order=0)
    tr = Compose([*chain[:3], chain[-1]])  # slice axis off, spatial, slice axis back, mirror
    moved = 0
    for _ in range(5):
        out = tr(data=img.copy(), seg=seg.copy())
        assert out["data"].shape == (8, 1, *patch) and out["seg"].shape == (8, 1, *patch)
        assert out["data"].min() >= 1.0  # no padding read
        np.testing.assert_array_equal(out["seg"], (out["data"] > 1.5).astype(np.int16))
        lo = [(b - p) // 2 for b, p in zip(spec.loaded_patch_size[1:], patch[1:], strict=True)]
        centre = seg[:, 0, 0, lo[0] : lo[0] + 32, lo[1] : lo[1] + 32]
        moved += sum(
            not any(
                np.array_equal(out["seg"][i, 0, 0], np.flip(centre[i], axes))
                for axes in [(), (0,), (1,), (0, 1)]
            )
            for i in range(8)
        )
    assert moved > 0


def test_enlarged_patch_size_known_answer() -> None:
    # A 10x10 square turned 45 degrees in-plane spans 10 * sqrt(2) = 14.14 -> 15 voxels.
    assert enlarged_patch_size((4, 10, 10), (0,), np.pi / 4, 1.0) == (4, 15, 15)
    assert enlarged_patch_size((4, 10, 10), (0,), 0.0, 0.5) == (8, 20, 20)


def test_mirror_with_box_draws_and_flips_like_batchgenerators() -> None:
    """Same random draws and flips as batchgenerators' MirrorTransform (2D and 3D samples),
    so runs without the cross-stitch stem augment exactly as before."""
    rng = np.random.default_rng(0)
    for spatial, axes in (((4, 5, 6), (0, 1, 2)), ((4, 5, 6), (1, 2)), ((5, 6), (0, 1, 2))):
        data = rng.normal(size=(6, 2, *spatial)).astype(np.float32)
        seg = rng.integers(0, 3, size=(6, 1, *spatial)).astype(np.int16)
        np.random.seed(4)
        ref = MirrorTransform(axes)(data=data.copy(), seg=seg.copy())
        after_ref = np.random.uniform()
        np.random.seed(4)
        ours = MirrorTransformWithBox(axes)(data=data.copy(), seg=seg.copy())
        assert np.random.uniform() == after_ref
        np.testing.assert_array_equal(ours["data"], ref["data"])
        np.testing.assert_array_equal(ours["seg"], ref["seg"])


def test_mirroring_keeps_the_patch_box_on_the_patch(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Patch and view are mirrored independently; the view's features cropped at the
    mirrored box are still the patch, voxel for voxel (the view here is the case itself)."""
    from autojoint.data.loader import JointDataLoader
    from autojoint.networks.cross_stitch import crop_box
    from tests.data.helpers import write_coordinate_case

    shape, patch = (10, 20, 12), (3, 5, 4)
    write_coordinate_case(tmp_path, "a", shape)
    loader = JointDataLoader(
        tmp_path, ["a"], patch_size=patch, batch_size=4, classes=["CAP"], seed=1
    )
    spec = augmentation_spec("light", patch, (1.0, 1.0, 1.0))
    mirrors = Compose(
        [
            view_transforms(spec, patch)[-1],
            view_transforms(spec, shape, "cls_data", "cls_seg", is_view=True)[-1],
        ]
    )
    np.random.seed(0)
    batches = make_batch_iterator(loader, 0, 0, mirrors)
    reversed_faces = 0
    for _ in range(10):
        batch = next(batches)
        box = torch.from_numpy(batch["patch_box"])
        inside = ((box >= 0) & (box <= 1)).all()
        if not inside:
            continue
        crop = crop_box(torch.from_numpy(batch["cls_data"]), box, patch)
        torch.testing.assert_close(crop, torch.from_numpy(batch["data"]), rtol=0, atol=1e-3)
        reversed_faces += int((box[:, 0] > box[:, 1]).sum())
    assert reversed_faces > 0


@pytest.mark.parametrize("raises", [False, True])
def test_batch_iterator_stops_its_worker_processes(tmp_path: Path, raises: bool) -> None:
    """The workers end with the ``with`` block, also when the block raises (batchgenerators
    itself stops them only on garbage collection)."""
    from autojoint.data.loader import JointDataLoader
    from tests.data.helpers import write_coordinate_case

    write_coordinate_case(tmp_path, "a", (10, 20, 12))
    loader = JointDataLoader(
        tmp_path, ["a"], patch_size=(3, 5, 4), batch_size=2, classes=["CAP"], seed=1
    )
    before = set(multiprocessing.active_children())
    workers: set[multiprocessing.process.BaseProcess] = set()
    with (
        pytest.raises(RuntimeError) if raises else nullcontext(),
        batch_iterator(loader, 2, 0) as batches,
    ):
        assert next(batches)["data"].shape == (2, 3, 3, 5, 4)
        workers = set(multiprocessing.active_children()) - before
        if raises:
            raise RuntimeError("a failing training step")
    assert len(workers) == 2
    assert not any(p.is_alive() for p in workers)
