"""COVID-CT-MD -> autojoint on the real data: a DICOM series and a NIfTI case with flags."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from autojoint.io.dataset import load_raw_dataset
from dataset_conversion.convert_covid_ct_md import SLICE_LABELS_OUT, main
from tests.dataset_conversion.helpers import assert_same_grid, read, read_csv_rows
from tests.shared_data import shared_data_or_skip

pytestmark = pytest.mark.realdata

# DICOM tags that identify a patient or a study; none of their values may be written.
IDENTIFYING_TAGS = ("0010|0010", "0010|0020", "0010|0030", "0020|000d", "0020|000e", "0008|0018")


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    ctmd = shared_data_or_skip("covid_ct_md")
    root = tmp_path_factory.mktemp("ctmd") / "COVID-CT-MD"
    # The published layout: class folders of patient folders of DICOM slices ...
    (root / "COVID-19 Cases").mkdir(parents=True)
    (root / "COVID-19 Cases" / "P002").symlink_to(ctmd / "dicom_P002_subset")
    # ... plus a case table for an already-converted NIfTI case and its slice flags.
    (root / "P001.nii.gz").symlink_to(ctmd / "nifti_ds2" / "P001.nii.gz")
    (root / "cases.csv").write_text(
        "case_id,diagnosis,file\nP001,covid-19,P001.nii.gz\n", encoding="utf-8"
    )
    (root / "slice_labels.csv").symlink_to(ctmd / "slice_labels.csv")
    out = root.parent / "out"
    assert main(["-i", str(root), "-o", str(out)]) == 0
    return {"src": ctmd, "out": out}


def test_cases_are_classification_only_with_diagnoses(converted: dict) -> None:
    ds = load_raw_dataset(converted["out"])
    assert ds.classes == ("COVID-19", "CAP", "Normal")
    assert [(c.case_id, c.diagnosis, c.label_path) for c in ds.cases] == [
        ("P001", "COVID-19", None),
        ("P002", "COVID-19", None),
    ]
    assert not (converted["out"] / "labelsTr").exists()


def test_dicom_series_becomes_hu_volume_on_its_grid(converted: dict) -> None:
    arr, img = read(converted["out"] / "imagesTr" / "P002_0000.nii.gz")
    ref = sitk.ReadImage(
        sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(converted["src"] / "dicom_P002_subset"))
    )
    assert img.GetSize() == (512, 512, 24)  # STACK.md: 24 slices, 0.6035 x 0.6035 x 2.0 mm
    np.testing.assert_allclose(img.GetSpacing(), (0.6035, 0.6035, 2.0), atol=1e-3)
    assert_same_grid(img, ref)
    assert arr.dtype == np.int16
    np.testing.assert_array_equal(arr, sitk.GetArrayFromImage(ref).astype(np.int16))
    # real HU: air outside the body and lung parenchyma around -850, soft tissue near 40
    assert np.percentile(arr, 5) < -900 and (np.abs(arr - 40) < 60).mean() > 0.05


def test_nifti_case_and_slice_flags_are_kept(converted: dict) -> None:
    arr, img = read(converted["out"] / "imagesTr" / "P001_0000.nii.gz")
    src_arr, src_img = read(converted["src"] / "nifti_ds2" / "P001.nii.gz")
    np.testing.assert_array_equal(arr, src_arr)
    assert_same_grid(img, src_img)
    rows = read_csv_rows(converted["out"] / SLICE_LABELS_OUT)
    src_rows = [
        r for r in read_csv_rows(converted["src"] / "slice_labels.csv") if r["case_id"] == "P001"
    ]
    assert rows == src_rows and len(rows) == img.GetSize()[2] == 148
    with open(converted["src"] / "cases.csv", encoding="utf-8", newline="") as fh:
        expected = next(
            int(r["n_infected_slices"]) for r in csv.DictReader(fh) if r["case_id"] == "P001"
        )
    assert sum(int(r["infected"]) for r in rows) == expected == 80


def test_no_dicom_identifier_is_written(converted: dict) -> None:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(sorted((converted["src"] / "dicom_P002_subset").glob("*.dcm"))[0]))
    reader.ReadImageInformation()
    values = [
        reader.GetMetaData(k).strip()
        for k in IDENTIFYING_TAGS
        if reader.HasMetaDataKey(k) and len(reader.GetMetaData(k).strip()) > 4
    ]
    assert values, "the DICOM subset should carry identifying UIDs to check against"
    for path in converted["out"].rglob("*"):
        if not path.is_file():
            continue
        if path.name.endswith(".nii.gz"):
            with gzip.open(path) as fh:
                header = fh.read(352)
            assert header[348:352] == b"\x00\x00\x00\x00"  # no NIfTI header extension
            data = header
        else:
            data = path.read_bytes()
        for v in values:
            assert v.encode() not in data, f"{v} found in {path}"


def test_bad_inputs_give_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["-i", str(tmp_path), "-o", str(tmp_path / "out")]) == 1
    assert "COVID-19 Cases" in capsys.readouterr().err
    (tmp_path / "cases.csv").write_text(
        "case_id,diagnosis,file\nX1,flu,x.nii.gz\n", encoding="utf-8"
    )
    (tmp_path / "x.nii.gz").write_bytes(b"")
    assert main(["-i", str(tmp_path), "-o", str(tmp_path / "out")]) == 1
    assert "unknown diagnosis 'flu'" in capsys.readouterr().err
    (tmp_path / "Normal Cases" / "normal009").mkdir(parents=True)
    (tmp_path / "cases.csv").unlink()
    assert main(["-i", str(tmp_path), "-o", str(tmp_path / "out")]) == 1
    assert "normal009: no DICOM series" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
