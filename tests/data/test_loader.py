"""Training loader: memory-mapped cases, old npz work dirs, per-label foreground sampling
and the oversampling ratio (also across the ranks of a distributed batch)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from autojoint.data.loader import (
    JointDataLoader,
    forced_foreground_slots,
    pick_foreground_voxel,
    sample_patch_start,
)
from autojoint.io.files import write_json
from autojoint.preprocessing.preprocess import (
    foreground_locations,
    list_preprocessed,
    load_preprocessed,
)
from tests.data.helpers import SHAPE, write_case_properties, write_coordinate_case


def _write_case(root: Path, case_id: str, seg: np.ndarray | None, diagnosis: str = "CAP") -> None:
    rng = np.random.default_rng(0)
    case = root / case_id
    case.mkdir(parents=True)
    np.save(case / "data.npy", rng.normal(size=(1, *SHAPE)).astype(np.float32))
    np.save(case / "cls_data.npy", rng.normal(size=(1, 8, 8, 8)).astype(np.float32))
    if seg is not None:
        np.save(case / "seg.npy", seg)
        np.save(case / "cls_seg.npy", np.zeros((8, 8, 8), np.uint8))
        np.save(case / "fg_locations.npy", foreground_locations(seg, rng))
    write_case_properties(root, case_id, diagnosis)


def _lesion_seg() -> np.ndarray:
    seg = np.zeros(SHAPE, np.uint8)
    seg[5, 10, 10] = 1  # one voxel: random patches almost never hold it
    seg[2, 3, 4] = 2
    return seg


def test_foreground_locations_are_per_label_and_pick_uniformly_over_labels() -> None:
    seg = np.zeros(SHAPE, np.uint8)
    seg[:5] = 1  # a big label ...
    seg[9, 0, 0] = 2  # ... and a rare one
    loc = foreground_locations(seg, np.random.default_rng(0))
    assert loc.dtype == np.int32 and loc.shape[1] == 4
    assert set(np.unique(loc[:, 0])) == {1, 2}
    np.testing.assert_array_equal(seg[tuple(loc[:, 1:].T)], loc[:, 0])
    rng = np.random.default_rng(1)
    picks = [pick_foreground_voxel(loc, rng) for _ in range(400)]
    rare = sum(int(seg[tuple(p)] == 2) for p in picks if p is not None)
    assert 150 < rare < 250  # about half, although label 2 is 1 voxel in 2,001
    assert pick_foreground_voxel(np.zeros((0, 4), np.int32), rng) is None


def test_loader_reads_cases_through_memory_maps(tmp_path: Path) -> None:
    _write_case(tmp_path, "a", _lesion_seg())
    case = load_preprocessed(tmp_path, "a", mmap_mode="r")
    assert isinstance(case.data, np.memmap) and isinstance(case.seg, np.memmap)
    in_memory = load_preprocessed(tmp_path, "a")
    assert not isinstance(in_memory.data, np.memmap) and in_memory.data.flags.writeable
    np.testing.assert_array_equal(case.data, in_memory.data)
    assert list_preprocessed(tmp_path) == ["a"]


def test_old_npz_work_dirs_still_load(tmp_path: Path) -> None:
    seg = _lesion_seg()
    data = np.ones((1, *SHAPE), np.float32)
    buf = io.BytesIO()
    np.savez(
        buf,
        data=data,
        seg=seg,
        cls_data=np.zeros((1, 8, 8, 8), np.float32),
        fg_coords=np.argwhere(seg > 0).astype(np.int32),
    )
    (tmp_path / "old.npz").write_bytes(buf.getvalue())
    write_case_properties(tmp_path, "old", None)
    case = load_preprocessed(tmp_path, "old", mmap_mode="r")
    np.testing.assert_array_equal(case.data, data)
    assert case.fg_locations is not None
    assert sorted(map(tuple, case.fg_locations)) == [(1, 5, 10, 10), (2, 2, 3, 4)]
    loader = JointDataLoader(
        tmp_path, ["old"], patch_size=(4, 8, 8), batch_size=3, classes=["CAP"], seed=0
    )
    assert loader.generate_train_batch()["data"].shape == (3, 1, 4, 8, 8)


def test_missing_arrays_name_the_fix(tmp_path: Path) -> None:
    write_json({"case_id": "x", "diagnosis": None}, tmp_path / "x.json")
    with pytest.raises(FileNotFoundError, match="autojoint_plan"):
        load_preprocessed(tmp_path, "x")


def test_forced_slots_follow_the_global_batch() -> None:
    assert forced_foreground_slots(3, 0.33) == [False, False, True]
    assert forced_foreground_slots(2, 0.33) == [False, True]
    # Global batch 4 over two ranks of 2: round(4 * 0.33) = 1, the last sample of rank 1.
    assert forced_foreground_slots(2, 0.33, 0, 4) == [False, False]
    assert forced_foreground_slots(2, 0.33, 2, 4) == [False, True]
    # Global batch 3 over three ranks of 1: a rank alone would round 0.33 down to none.
    assert [forced_foreground_slots(1, 0.33, r, 3)[0] for r in range(3)] == [False, False, True]


def test_oversampling_ratio(tmp_path: Path) -> None:
    """With a single-voxel lesion, a patch holds it (almost) only when it was forced to:
    the share of patches with a lesion is the forced third of each batch."""
    _write_case(tmp_path, "a", _lesion_seg())
    _write_case(tmp_path, "empty", None, diagnosis="normal")
    loader = JointDataLoader(
        tmp_path,
        ["a"],
        patch_size=(2, 4, 4),
        batch_size=3,
        classes=["CAP", "normal"],
        seed=0,
        oversample_foreground=1 / 3,
    )
    hits = np.zeros(3)
    for _ in range(60):
        batch = loader.generate_train_batch()
        hits += (batch["seg"].reshape(3, -1) > 0).any(axis=1)
        assert batch["diagnosis"].tolist() == [0, 0, 0] and batch["has_mask"].all()
    assert hits[2] == 60  # the forced slot always holds a lesion voxel
    assert hits[:2].sum() <= 12  # random patches of 2x4x4 in 10x20x20 rarely do
    # A case without a mask never breaks the forced slot.
    empty = JointDataLoader(
        tmp_path, ["empty"], patch_size=(2, 4, 4), batch_size=3, classes=["CAP", "normal"], seed=0
    )
    batch = empty.generate_train_batch()
    assert not batch["has_mask"].any() and batch["diagnosis"].tolist() == [1, 1, 1]


def test_larger_loaded_patch_keeps_the_lesion_in_the_central_patch(tmp_path: Path) -> None:
    _write_case(tmp_path, "a", _lesion_seg())
    loader = JointDataLoader(
        tmp_path,
        ["a"],
        patch_size=(2, 4, 4),
        batch_size=1,
        classes=["CAP"],
        seed=3,
        oversample_foreground=1.0,
        loaded_patch_size=(4, 10, 12),
    )
    for _ in range(30):
        seg = loader.generate_train_batch()["seg"][0, 0]
        assert seg.shape == (4, 10, 12)
        assert seg[1:3, 3:7, 4:8].any()  # the centre crop that spatial augmentation keeps


@pytest.mark.parametrize(
    ("loaded", "shape", "patch"),
    [
        (None, (10, 20, 12), (3, 5, 4)),
        ((5, 9, 8), (10, 20, 12), (3, 5, 4)),
        ((5, 9, 8), (2, 4, 12), (3, 5, 4)),
        # a 2D slice smaller than its patch, read through a crop enlarged for rotation:
        # before, the crop was placed instead of the patch, which drifted off the slice
        ((1, 60, 64), (1, 20, 18), (1, 24, 24)),
    ],
    ids=["patch", "larger_loaded", "case_smaller_than_patch", "slice_in_enlarged_crop"],
)
def test_patch_box_is_where_the_patch_was_cut(tmp_path: Path, loaded, shape, patch) -> None:  # type: ignore[no-untyped-def]
    """``patch_box`` = (start, start + size) / case shape of the central ``patch_size``
    region, for random and lesion patches; cropping the view (here the case itself) to the
    box gives back the patch, also where the patch overhangs a case smaller than it."""
    from autojoint.networks.cross_stitch import crop_box

    data = write_coordinate_case(tmp_path, "a", shape)
    loader = JointDataLoader(
        tmp_path,
        ["a"],
        patch_size=patch,
        batch_size=3,
        classes=["CAP"],
        seed=0,
        oversample_foreground=1 / 3,
        loaded_patch_size=loaded,
    )
    big = loaded or patch
    offset = [(b - p) // 2 for b, p in zip(big, patch, strict=True)]
    inner = (slice(None), *[slice(o, o + p) for o, p in zip(offset, patch, strict=True)])
    lesion = np.argwhere(np.load(tmp_path / "a" / "seg.npy") > 0)[0]
    for _ in range(20):
        batch = loader.generate_train_batch()
        box = batch["patch_box"]
        assert box.dtype == np.float32 and box.shape == (3, 2, 3)
        for i in range(3):
            start = np.rint(box[i, 0] * shape).astype(int)
            np.testing.assert_allclose(box[i, 1] - box[i, 0], np.divide(patch, shape), atol=1e-6)
            # The voxels the loader cut are the ones the box names (inside the case).
            expected = np.full((3, *patch), np.nan, np.float32)
            src = [
                slice(max(s, 0), min(s + p, n)) for s, p, n in zip(start, patch, shape, strict=True)
            ]
            dst = [slice(a.start - s, a.stop - s) for a, s in zip(src, start, strict=True)]
            expected[(slice(None), *dst)] = data[(slice(None), *src)]
            got = batch["data"][i][inner]
            known = ~np.isnan(expected)
            np.testing.assert_array_equal(got[known], expected[known])
            # The view's crop at the box is the patch where the patch lies in the case.
            crop = crop_box(torch.from_numpy(data[None]), torch.from_numpy(box[i : i + 1]), patch)
            np.testing.assert_allclose(crop[0].numpy()[known], expected[known], rtol=0, atol=1e-3)
            # Along axes where the case is larger than the patch no patch overhangs it, not
            # even one holding the lesion near the corner; along smaller axes every patch
            # holds the whole case.
            for a, (n, p) in enumerate(zip(shape, patch, strict=True)):
                inside = box[i, 0, a] >= -1e-6 and box[i, 1, a] <= 1 + 1e-6
                covers = box[i, 0, a] <= 1e-6 and box[i, 1, a] >= 1 - 1e-6
                assert inside if n >= p else covers
        # The forced (last) sample holds the lesion voxel inside its box.
        assert batch["seg"][2, 0][inner[1:]].any()
        lo, hi = box[2, 0] * shape, box[2, 1] * shape
        assert np.all(lo <= lesion + 1e-4) and np.all(lesion + 1 <= hi + 1e-4)


@pytest.mark.parametrize("center", [None, (0, 3, 15)], ids=["random", "lesion"])
def test_patch_start_range_known_answer(center) -> None:  # type: ignore[no-untyped-def]
    """Starts stay in [min(0, s - p), max(0, s - p)] per axis and cover that range: a
    patch fits inside a larger case and holds all of a smaller one; a lesion voxel is
    always inside its patch."""
    shape, patch = (1, 20, 18), (1, 8, 24)
    rng = np.random.default_rng(0)
    starts = np.array([sample_patch_start(shape, patch, rng, center) for _ in range(2000)])
    assert (starts[:, 0] == 0).all()
    if center is None:  # the whole range, uniformly
        assert starts[:, 1].min() == 0 and starts[:, 1].max() == 12
        assert starts[:, 2].min() == -6 and starts[:, 2].max() == 0
    else:  # clipped to it: voxel 3 in y starts at 0..3; voxel 15 in x at -6..0 only
        assert set(starts[:, 1]) == {0, 1, 2, 3} and set(starts[:, 2]) == set(range(-6, 1))
        assert ((starts <= center) & (np.array(center) < starts + patch)).all()


def test_patch_box_known_answer() -> None:
    from autojoint.data.loader import patch_box

    box = patch_box((-2, 5, 0), (4, 10, 8), (8, 20, 8))
    np.testing.assert_array_equal(
        box, np.array([[-0.25, 0.25, 0.0], [0.25, 0.75, 1.0]], np.float32)
    )


def test_batches_have_the_typed_keys_shapes_and_dtypes(tmp_path: Path) -> None:
    from autojoint.data.batch import Batch, TensorBatch
    from autojoint.training.step import batch_to_device

    _write_case(tmp_path, "a", _lesion_seg())
    _write_case(tmp_path, "b", None, diagnosis="normal")
    loader = JointDataLoader(
        tmp_path, ["a", "b"], patch_size=(2, 4, 4), batch_size=3, classes=["CAP"], seed=0
    )
    batch = loader.generate_train_batch()
    assert set(batch) == Batch.__required_keys__
    expected = {
        "data": ((3, 1, 2, 4, 4), np.float32),
        "seg": ((3, 1, 2, 4, 4), np.int16),
        "cls_data": ((3, 1, 8, 8, 8), np.float32),
        "cls_seg": ((3, 8, 8, 8), np.int16),
        "diagnosis": ((3,), np.int64),
        "has_mask": ((3,), np.bool_),
        "patch_box": ((3, 2, 3), np.float32),
    }
    for key, (shape, dtype) in expected.items():
        assert batch[key].shape == shape and batch[key].dtype == dtype, key
    assert len(batch["keys"]) == 3 and set(batch["keys"]) <= {"a", "b"}
    tensors = batch_to_device(batch, torch.device("cpu"))
    assert set(tensors) == TensorBatch.__required_keys__ | TensorBatch.__optional_keys__
    assert tensors["seg"].shape == (3, 2, 4, 4) and tensors["seg"].dtype == torch.int64
    assert tensors["cls_seg"].dtype == torch.int64 and tensors["has_mask"].dtype == torch.bool
    assert tensors["data"].dtype == torch.float32 and tensors["patch_box"].shape == (3, 2, 3)
