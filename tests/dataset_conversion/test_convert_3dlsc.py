"""3DLSC-COVID -> autojoint on the class-folder layout read from DeepSC-COVID's description."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autojoint.io.dataset import load_raw_dataset
from dataset_conversion.convert_3dlsc import CLASSES, convert_3dlsc, main
from dataset_conversion.raw_writer import ConversionError
from tests.dataset_conversion.helpers import read, read_csv_rows, write_volume

SHAPE = (6, 16, 16)


def make_3dlsc(root: Path) -> dict[str, np.ndarray]:
    """COVID-19/{images,masks} (masks as .nii with a _mask suffix), CAP/{images,masks} with
    one scan unmasked, NP/ holding scans directly and no masks; one name repeats across
    classes."""
    rng = np.random.default_rng(2)
    masks = {}
    for folder, names, masked in (
        ("COVID-19", ["scan001", "scan002"], {"scan001", "scan002"}),
        ("CAP", ["scan001", "cap_17"], {"cap_17"}),
        ("NP", ["np_5"], set()),
    ):
        img_dir = root / folder / ("images" if folder != "NP" else "")
        for name in names:
            write_volume(
                rng.integers(-1000, 200, SHAPE).astype(np.int16), img_dir / f"{name}.nii.gz"
            )
            if name in masked:
                mask = (rng.random(SHAPE) < 0.2).astype(np.uint8) * 255  # 0/255 masks occur
                write_volume(mask, root / folder / "masks" / f"{name}_mask.nii")
                masks[f"{folder}/{name}"] = mask > 0
    (root / "README.txt").write_text("not a class folder", encoding="utf-8")
    (root / "docs").mkdir()
    return masks


def test_class_folders_become_diagnoses_with_masks(tmp_path: Path) -> None:
    masks = make_3dlsc(tmp_path / "3DLSC-COVID")
    out = tmp_path / "out"
    assert main(["-i", str(tmp_path / "3DLSC-COVID"), "-o", str(out)]) == 0
    ds = load_raw_dataset(out)
    assert ds.classes == CLASSES == ("COVID-19", "CAP", "non-pneumonia")
    got = {c.case_id: (c.diagnosis, c.label_path is not None) for c in ds.cases}
    assert got == {
        "covid_scan001": ("COVID-19", True),
        "covid_scan002": ("COVID-19", True),
        "cap_scan001": ("CAP", False),
        "cap_cap_17": ("CAP", True),
        "np_np_5": ("non-pneumonia", False),
    }
    np.testing.assert_array_equal(
        read(out / "labelsTr" / "covid_scan002.nii.gz")[0], masks["COVID-19/scan002"]
    )
    np.testing.assert_array_equal(
        read(out / "labelsTr" / "cap_cap_17.nii.gz")[0], masks["CAP/cap_17"]
    )
    assert len(read_csv_rows(out / "diagnosesTr.csv")) == 5


def test_empty_masks_for_non_pneumonia(tmp_path: Path) -> None:
    make_3dlsc(tmp_path / "src")
    convert_3dlsc(tmp_path / "src", tmp_path / "out", empty_masks_for_np=True)
    arr, img = read(tmp_path / "out" / "labelsTr" / "np_np_5.nii.gz")
    assert arr.shape == SHAPE and not arr.any()
    assert (
        img.GetSpacing()
        == read(tmp_path / "out" / "imagesTr" / "np_np_5_0000.nii.gz")[1].GetSpacing()
    )
    assert not (tmp_path / "out" / "labelsTr" / "cap_scan001.nii.gz").exists()  # CAP stays unmasked


def test_no_class_folder_is_explained(tmp_path: Path) -> None:
    (tmp_path / "scans").mkdir()
    with pytest.raises(ConversionError, match="no class folder"):
        convert_3dlsc(tmp_path, tmp_path / "out")
