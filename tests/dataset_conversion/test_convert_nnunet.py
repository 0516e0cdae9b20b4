"""nnU-Net v2 raw dataset -> autojoint, on a faithful synthetic nnU-Net layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from autojoint.io.dataset import load_raw_dataset
from dataset_conversion.convert_nnunet import convert_nnunet, main
from dataset_conversion.raw_writer import ConversionError
from tests.dataset_conversion.helpers import assert_same_grid, read, read_csv_rows, write_volume

FLIP = (-1, 0, 0, 0, -1, 0, 0, 0, 1)


def make_nnunet(root: Path, *, labels: dict | None = None, ending: str = ".nii.gz") -> Path:
    """Dataset017_Lung as nnU-Net v2 wants it: two channels, 4 training cases (one without
    mask is not allowed by nnU-Net, so all have masks), 1 test case, a flipped direction."""
    rng = np.random.default_rng(0)
    meta = {
        "channel_names": {"0": "CT", "1": "PET"},
        "labels": labels or {"background": 0, "ground_glass": 1, "consolidation": 2},
        "numTraining": 4,
        "file_ending": ending,
        "name": "Lung",
    }
    (root / "imagesTr").mkdir(parents=True)
    for split, ids in (
        ("Tr", ["lung_001", "lung_002", "lung_003", "lung_004"]),
        ("Ts", ["lung_101"]),
    ):
        for i, case in enumerate(ids):
            shape = (6 + i, 10, 12)
            kw = {"spacing_zyx": (3.0, 0.7, 0.7), "origin": (1.0 * i, 2.0, -3.0)}
            if i == 1:
                kw["direction"] = FLIP
            for c in range(2):
                img = rng.integers(-1000, 400, shape).astype(np.int16)
                write_volume(img, root / f"images{split}" / f"{case}_{c:04d}{ending}", **kw)
            seg = rng.integers(0, 3, shape).astype(np.uint8)
            write_volume(seg, root / f"labels{split}" / f"{case}{ending}", **kw)
    (root / "dataset.json").write_text(json.dumps(meta), encoding="utf-8")
    return root


def test_converts_layout_voxels_geometry_and_diagnoses(tmp_path: Path) -> None:
    src = make_nnunet(tmp_path / "Dataset017_Lung")
    csv_path = tmp_path / "clinical.csv"
    # other column names, a BOM, an unknown diagnosis left empty
    csv_path.write_text(
        "\ufeffpatient,outcome\nlung_001,COVID-19\nlung_002,CAP\nlung_003,\nlung_101,CAP\n",
        encoding="utf-8",  # not the locale's: a DICOM read earlier in the process may set ASCII
    )
    out = tmp_path / "out"
    counts = convert_nnunet(
        src, out, diagnoses_csv=csv_path, case_column="patient", diagnosis_column="outcome"
    )
    assert counts == {
        "num_training": 4,
        "num_test": 1,
        "num_with_label": 4,
        "num_with_diagnosis": 2,
    }
    ds = load_raw_dataset(out)
    assert ds.classes == ("COVID-19", "CAP")  # order of first appearance
    assert ds.channel_names == {"0": "CT", "1": "PET"}
    assert {c.case_id: c.diagnosis for c in ds.cases} == {
        "lung_001": "COVID-19",
        "lung_002": "CAP",
        "lung_003": None,
        "lung_004": None,
    }
    for case in ds.cases:
        for c, path in enumerate(case.image_paths):
            new, new_img = read(path)
            old, old_img = read(src / "imagesTr" / f"{case.case_id}_{c:04d}.nii.gz")
            np.testing.assert_array_equal(new, old)
            assert_same_grid(new_img, old_img)
        assert case.label_path is not None
        np.testing.assert_array_equal(
            read(case.label_path)[0], read(src / "labelsTr" / f"{case.case_id}.nii.gz")[0]
        )
    assert read_csv_rows(out / "diagnosesTs.csv") == [{"case": "lung_101", "diagnosis": "CAP"}]
    assert (out / "imagesTs" / "lung_101_0001.nii.gz").is_file()


def test_without_csv_is_segmentation_only_and_nrrd_becomes_nifti(tmp_path: Path) -> None:
    src = make_nnunet(tmp_path / "src", ending=".nrrd")
    assert main(["-i", str(src), "-o", str(tmp_path / "out")]) == 0
    ds = load_raw_dataset(tmp_path / "out")
    assert ds.classes == () and ds.file_ending == ".nii.gz"
    assert not (tmp_path / "out" / "diagnosesTr.csv").exists()


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({"background": 0, "lesion": [1, 2]}, "region-based"),
        ({"background": 0, "lesion": 1, "ignore": 2}, "ignore"),
        ({"background": 0, "lesion": 2}, "consecutive"),
    ],
)
def test_unsupported_labels_are_refused(tmp_path: Path, labels: dict, message: str) -> None:
    src = make_nnunet(tmp_path / "src", labels=labels)
    with pytest.raises(ConversionError, match=message):
        convert_nnunet(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_csv_errors_name_the_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = make_nnunet(tmp_path / "src")
    bad = tmp_path / "d.csv"
    bad.write_text("case,diagnosis\nlung_999,CAP\nlung_001,COVID-19\n", encoding="utf-8")
    assert main(["-i", str(src), "-o", str(tmp_path / "out"), "--diagnoses", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "d.csv" in err and "lung_999" in err
    bad.write_text("case,label\nlung_001,CAP\n", encoding="utf-8")
    assert main(["-i", str(src), "-o", str(tmp_path / "out"), "--diagnoses", str(bad)]) == 1
    assert "--diagnosis-column" in capsys.readouterr().err
    bad.write_text("case,diagnosis\nlung_001,CAP\nlung_002,COVID-19\n", encoding="utf-8")
    args = ["-i", str(src), "-o", str(tmp_path / "out"), "--diagnoses", str(bad)]
    assert main([*args, "--classes", "CAP", "normal"]) == 1
    assert "COVID-19" in capsys.readouterr().err


def test_failed_conversion_leaves_nothing_and_existing_output_is_kept(tmp_path: Path) -> None:
    src = make_nnunet(tmp_path / "src")
    out = tmp_path / "out"
    convert_nnunet(src, out)
    before = sorted(p.name for p in (out / "imagesTr").iterdir())
    with pytest.raises(ConversionError, match="--overwrite"):
        convert_nnunet(src, out)
    # a mask value outside the labels in the last case: the old output must survive intact
    write_volume(
        np.full((9, 10, 12), 7, np.uint8),
        src / "labelsTr" / "lung_004.nii.gz",
        spacing_zyx=(3.0, 0.7, 0.7),
        origin=(3.0, 2.0, -3.0),
    )
    with pytest.raises(ConversionError, match="lung_004"):
        convert_nnunet(src, out, overwrite=True)
    assert sorted(p.name for p in (out / "imagesTr").iterdir()) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
