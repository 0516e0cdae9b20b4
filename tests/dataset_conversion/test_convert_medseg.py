"""MedSeg / COVID-19-CT-Seg volumes (faithful synthetic layout) and the real 2D MedSeg slices."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import SimpleITK as sitk

from autojoint.io.dataset import load_raw_dataset
from dataset_conversion.convert_medseg import (
    SLICE_LABELS,
    convert_medseg_volumes,
    main,
    main_slices,
)
from dataset_conversion.raw_writer import ConversionError
from tests.dataset_conversion.helpers import read, write_volume
from tests.shared_data import shared_data_or_skip

SHAPE = (8, 20, 24)


def make_ct_seg(root: Path) -> dict[str, np.ndarray]:
    """COVID-19-CT-Seg: COVID-19-CT-Seg_20cases/, Infection_Mask/, Lung_Mask/ (lungs 1, 2)."""
    rng = np.random.default_rng(1)
    masks = {}
    for i, name in enumerate(["coronacases_001", "coronacases_002", "radiopaedia_4_85506_1"]):
        kw = {"spacing_zyx": (5.0, 0.7, 0.7), "origin": (-10.0 * i, 3.0, 0.0)}
        ct = rng.integers(-1000, 300, SHAPE).astype(np.int16)
        write_volume(ct, root / "COVID-19-CT-Seg_20cases" / f"{name}.nii.gz", **kw)
        lesion = (rng.random(SHAPE) < 0.1).astype(np.uint8)
        masks[name] = lesion
        if i < 2:  # the third case has no infection mask
            write_volume(lesion, root / "Infection_Mask" / f"{name}.nii.gz", **kw)
        lungs = np.zeros(SHAPE, np.uint8)
        lungs[:, 4:16, 2:10], lungs[:, 4:16, 14:22] = 1, 2
        write_volume(lungs, root / "Lung_Mask" / f"{name}.nii.gz", **kw)
    return masks


def test_volumes_lesions_and_lung_masks(tmp_path: Path) -> None:
    src = tmp_path / "COVID-19-CT-Seg"
    masks = make_ct_seg(src)
    out = tmp_path / "out"
    args = ["-i", str(src / "COVID-19-CT-Seg_20cases"), "-m", str(src / "Infection_Mask")]
    assert main([*args, "--lungs", str(src / "Lung_Mask"), "-o", str(out)]) == 0
    ds = load_raw_dataset(out)
    assert ds.classes == () and ds.labels == {"background": 0, "lesion": 1}
    by_id = {c.case_id: c for c in ds.cases}
    assert sorted(by_id) == ["coronacases_001", "coronacases_002", "radiopaedia_4_85506_1"]
    assert by_id["radiopaedia_4_85506_1"].label_path is None
    for name in ("coronacases_001", "coronacases_002"):
        label_path = by_id[name].label_path
        assert label_path is not None
        np.testing.assert_array_equal(read(label_path)[0], masks[name])
    lungs = read(out / "lungsTr" / "coronacases_001.nii.gz")[0]
    assert set(np.unique(lungs)) == {0, 1}  # left/right merged into one lung mask
    assert lungs[:, 4:16, 2:10].all() and not lungs[:, :4].any()


def test_medseg_multiclass_remap_and_suffix_pairing(tmp_path: Path) -> None:
    """MedSeg's tr_im / tr_mask: 1 ground-glass, 2 consolidation, 3 pleural effusion."""
    mask = np.zeros(SHAPE, np.uint8)
    mask[1, 2:5, 2:5], mask[2, 5:9, 5:9], mask[3, 10:12, 10:12] = 1, 2, 3
    write_volume(np.zeros(SHAPE, np.int16), tmp_path / "im" / "tr_im.nii.gz")
    write_volume(mask, tmp_path / "msk" / "tr_mask.nii.gz")
    out = tmp_path / "out"
    with pytest.raises(ConversionError, match=r"tr_mask.nii.gz: mask values \[0, 1, 2, 3\]"):
        convert_medseg_volumes(
            tmp_path / "im", out, masks_dir=tmp_path / "msk", label_names=["gg", "cons"]
        )
    convert_medseg_volumes(
        tmp_path / "im",
        out,
        masks_dir=tmp_path / "msk",
        label_names=["ground_glass", "consolidation"],
        remap={3: 0},
        prefix="medseg_",
    )
    meta = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    assert meta["labels"] == {"background": 0, "ground_glass": 1, "consolidation": 2}
    expected = np.where(mask == 3, 0, mask)
    np.testing.assert_array_equal(read(out / "labelsTr" / "medseg_tr.nii.gz")[0], expected)
    convert_medseg_volumes(
        tmp_path / "im", out, masks_dir=tmp_path / "msk", binarize=True, overwrite=True
    )
    np.testing.assert_array_equal(read(out / "labelsTr" / "tr.nii.gz")[0], (mask > 0))


def test_orphan_mask_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_volume(np.zeros(SHAPE, np.int16), tmp_path / "im" / "a.nii.gz")
    write_volume(np.zeros(SHAPE, np.uint8), tmp_path / "msk" / "b_seg.nii.gz")
    args = ["-i", str(tmp_path / "im"), "-m", str(tmp_path / "msk"), "-o", str(tmp_path / "o")]
    assert main(args) == 1
    assert "b_seg.nii.gz" in capsys.readouterr().err


@pytest.mark.realdata
def test_real_medseg_slices_become_2d_images(tmp_path: Path) -> None:
    src = shared_data_or_skip("infnet_semiseg", "Dataset")
    out = tmp_path / "slices"
    assert main_slices(["-i", str(src), "-o", str(out)]) == 0
    meta = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    assert meta["labels"] == SLICE_LABELS and meta["numTraining"] == 50
    assert meta["channel_names"] == {"0": "CT_8bit"} and "classes" not in meta
    ds = load_raw_dataset(out)
    assert len(ds.cases) == 50 and all(c.label_path is not None for c in ds.cases)
    assert len(list((out / "imagesTs").glob("*_0000.nii.gz"))) == 48
    assert len(list((out / "labelsTs").glob("*.nii.gz"))) == 48
    seen: set[int] = set()
    for split, sub in (
        ("tr", "TrainingSet/MultiClassInfection-Train"),
        ("ts", "TestingSet/MultiClassInfection-Test"),
    ):
        for jpg in sorted((src / sub / "Imgs").glob("*.jpg"))[:6]:
            case = f"medseg_{split}_{jpg.stem}"
            folder = "Tr" if split == "tr" else "Ts"
            img = sitk.ReadImage(str(out / f"images{folder}" / f"{case}_0000.nii.gz"))
            lab = sitk.ReadImage(str(out / f"labels{folder}" / f"{case}.nii.gz"))
            assert img.GetDimension() == lab.GetDimension() == 2
            assert img.GetSpacing() == lab.GetSpacing() == (1.0, 1.0)
            ref_img = np.asarray(PIL.Image.open(jpg))
            ref_lab = np.asarray(PIL.Image.open(src / sub / "GT" / f"{jpg.stem}.png"))
            np.testing.assert_array_equal(sitk.GetArrayFromImage(img), ref_img)  # (Y, X)
            lab_arr = sitk.GetArrayFromImage(lab)
            np.testing.assert_array_equal(lab_arr, ref_lab)
            # cross-check with Inf-Net's per-class 1-bit masks where they exist
            for value, folder_name in ((1, "GT-1"), (2, "GT-2")):
                bit = src / sub / folder_name / f"{jpg.stem}.png"
                if bit.is_file():
                    np.testing.assert_array_equal(
                        lab_arr == value, np.asarray(PIL.Image.open(bit)) > 0
                    )
            seen |= set(np.unique(lab_arr).tolist())
    assert seen == {0, 1, 2}
