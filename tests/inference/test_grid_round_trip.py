"""Preprocessing then its inverse returns a mask to the exact input grid, for scans whose
thick-slice axis is z, y or x (the plan transposes it first)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autojoint.inference.predictor import mask_on_input_grid
from autojoint.io.case_loading import load_channels, load_label
from autojoint.pipeline import plan_and_preprocess
from autojoint.preprocessing.preprocess import preprocess_arrays
from tests.synthetic import make_raw_dataset


def _move_axis_dataset(root: Path, coarse_axis: int) -> Path:
    """Tiny dataset whose 2.5-3 mm axis is ``coarse_axis`` of the array."""
    raw = make_raw_dataset(root, num_cases=4, flip_case=1)
    if coarse_axis == 0:
        return raw
    import SimpleITK as sitk

    for p in list((raw / "imagesTr").glob("*.nii.gz")) + list((raw / "labelsTr").glob("*.nii.gz")):
        img = sitk.ReadImage(str(p))
        arr = np.moveaxis(sitk.GetArrayFromImage(img), 0, coarse_axis)
        sp = list(reversed(img.GetSpacing()))  # z, y, x
        sp.insert(coarse_axis, sp.pop(0))
        out = sitk.GetImageFromArray(np.ascontiguousarray(arr))
        out.SetSpacing(tuple(reversed(sp)))
        out.SetOrigin(img.GetOrigin())
        out.SetDirection(img.GetDirection())
        sitk.WriteImage(out, str(p))
    return raw


def _round_trip(raw: Path, work: Path, coarse_axis: int) -> dict[str, np.ndarray]:
    plan = plan_and_preprocess(raw, work, preprocess=False)
    assert plan.transpose_forward[0] == coarse_axis
    assert plan.target_spacing[0] == max(plan.target_spacing)
    masks = {}
    for case in ("case_000", "case_001"):  # case_001 has a flipped direction
        data, geo = load_channels([raw / "imagesTr" / f"{case}_0000.nii.gz"])
        seg = load_label(raw / "labelsTr" / f"{case}.nii.gz", geo, plan.num_labels)
        pre = preprocess_arrays(case, data, geo, seg, plan)
        assert pre.seg is not None and pre.data.shape[1] < pre.data.shape[2]  # coarse first
        # A perfect network: one-hot of the preprocessed reference.
        probs = np.stack([(pre.seg == k).astype(np.float32) for k in range(plan.num_labels)])
        mask = mask_on_input_grid(probs, pre, plan)
        assert mask.shape == seg.shape
        lesion, ref = mask > 0, seg > 0
        dice = 2 * np.logical_and(lesion, ref).sum() / max(lesion.sum() + ref.sum(), 1)
        assert dice > 0.75, dice  # small blobs lose a little in resampling 2.5/3 -> 2.75 mm
        masks[case] = mask
    return masks


def test_transposition_is_exactly_undone(tmp_path: Path) -> None:
    """The same scans stored with the thick axis as array axis 0, 1 or 2 give the same
    masks (moved back), so transposing never shifts or mixes axes."""
    reference = _round_trip(_move_axis_dataset(tmp_path / "raw0", 0), tmp_path / "w0", 0)
    for axis in (1, 2):
        masks = _round_trip(
            _move_axis_dataset(tmp_path / f"raw{axis}", axis), tmp_path / f"w{axis}", axis
        )
        for case, mask in masks.items():
            np.testing.assert_array_equal(np.moveaxis(mask, axis, 0), reference[case])
