"""``autojoint_predict`` on DICOM inputs (folders and zips) with untrained folds: DICOM-SEG
and NIfTI outputs that agree voxel for voxel, series choice, refusals before predicting."""

from __future__ import annotations

import csv
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from autojoint.cli import predict as cli_predict
from autojoint.cli.common import EXIT_ERROR, EXIT_SOME_FAILED
from autojoint.io.image_io import checked_series
from tests.dicom_series import new_uid, write_series
from tests.inference.tiny_workdir import make_tiny_workdir, record_predicted_cases
from tests.synthetic import make_case, write_volume

FAST = ["--no-tta", "--step-size", "1"]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_workdir(tmp_path_factory.mktemp("tiny"), num_cases=2, folds=("0",))[1]


def _scan(seed: int, num_slices: int = 10) -> np.ndarray:
    return make_case(np.random.default_rng(seed), "COVID-19", (num_slices, 36, 36))[0]


def _predict(work: Path, inputs: Path, out: Path, *extra: str) -> int:
    return cli_predict.main(["-i", str(inputs), "-o", str(out), "-w", str(work), *FAST, *extra])


def _failures(out: Path) -> dict[str, str]:
    with open(out / "failures.csv", encoding="utf-8", newline="") as fh:
        return {row["case"]: row["reason"] for row in csv.DictReader(fh)}


def test_seg_and_nifti_agree_for_a_folder_and_a_zip(
    work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hd = pytest.importorskip("highdicom", reason="the 'dicom' extra (highdicom) is not installed")
    inputs = tmp_path / "inputs"
    write_series(inputs / "folder_case", _scan(1), spacing=(2.5, 0.75, 0.75))
    files = write_series(tmp_path / "zipped", _scan(2), spacing=(2.0, 0.8, 0.7))
    with zipfile.ZipFile(inputs / "zip_case.zip", "w") as archive:
        for f in files:
            archive.write(f, f"zip_case/{f.name}")
    out = tmp_path / "out"
    assert _predict(work, inputs, out, "--output-format", "nifti", "dicom-seg") == 0
    for case, source in (
        ("folder_case", inputs / "folder_case"),
        ("zip_case", tmp_path / "zipped"),
    ):
        nifti = sitk.ReadImage(str(out / f"{case}.nii.gz"))
        mask = sitk.GetArrayFromImage(nifti)
        assert len(np.unique(mask)) > 1  # the untrained net labels voxels: a real comparison
        series = checked_series(source).series
        reference = sitk.ReadImage([str(f) for f in series.files])
        np.testing.assert_allclose(nifti.GetSpacing(), reference.GetSpacing(), rtol=1e-6)
        np.testing.assert_allclose(nifti.GetOrigin(), reference.GetOrigin(), atol=1e-4)
        seg = hd.seg.segread(out / f"{case}_seg.dcm")
        uids = [str(sitk_uid(f)) for f in series.files]
        back = seg.get_pixels_by_source_instance(uids, combine_segments=True)
        np.testing.assert_array_equal(back, mask)
        assert [s.SegmentLabel for s in seg.SegmentSequence] == ["ground_glass", "consolidation"]
        assert "dicom_series" not in json.loads((out / f"{case}.json").read_text(encoding="utf-8"))
    # --continue asks for both files: a case missing its SEG is predicted again.
    (out / "zip_case_seg.dcm").unlink()
    calls = record_predicted_cases(monkeypatch)
    args = ("--output-format", "nifti", "dicom-seg", "--continue")
    assert _predict(work, inputs, out, *args) == 0
    assert calls == ["zip_case"] and (out / "zip_case_seg.dcm").is_file()
    # DICOM-SEG alone writes no NIfTI mask.
    assert _predict(work, inputs, tmp_path / "seg_only", "--output-format", "dicom-seg") == 0
    assert sorted(p.name for p in (tmp_path / "seg_only").glob("*_seg.dcm")) == [
        "folder_case_seg.dcm",
        "zip_case_seg.dcm",
    ]
    assert list((tmp_path / "seg_only").glob("*.nii.gz")) == []


def sitk_uid(path: Path) -> str:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return reader.GetMetaData("0008|0018").strip()


def test_dicom_seg_refuses_other_inputs_before_predicting(
    work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("highdicom", reason="the 'dicom' extra (highdicom) is not installed")
    inputs = tmp_path / "inputs"
    write_volume(_scan(3), inputs / "nifti_case.nii.gz")
    write_series(inputs / "dicom_case", _scan(4))
    write_series(inputs / "mr_case", _scan(5), modality="MR")
    calls = record_predicted_cases(monkeypatch)
    out = tmp_path / "out"
    assert _predict(work, inputs, out, "--output-format", "dicom-seg") == EXIT_SOME_FAILED
    failures = _failures(out)
    assert set(failures) == {"nifti_case", "mr_case"}
    assert (
        "nifti_case.nii.gz: is not a DICOM series, but --output-format dicom-seg needs one"
        in (failures["nifti_case"])
    )
    assert "Modality is MR, but this model reads CT scans" in failures["mr_case"]
    assert "nifti_case" not in calls and "mr_case" not in calls  # refused before predicting
    assert (out / "dicom_case_seg.dcm").is_file()


def test_a_folder_of_several_series_needs_a_choice(work: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "inputs"
    thin, thick = new_uid(), new_uid()
    write_series(inputs / "study", _scan(6, 12), series_uid=thin, description="thin", prefix="a")
    write_series(inputs / "study", _scan(7, 8), series_uid=thick, description="thick", prefix="b")
    out = tmp_path / "out"
    assert _predict(work, inputs, out) == EXIT_SOME_FAILED
    reason = _failures(out)["study"]
    assert "holds 2 DICOM series" in reason and thin in reason and thick in reason
    assert not (out / "study.nii.gz").exists()
    # The rule: the axial CT series with the most slices, recorded in the case's record.
    assert _predict(work, inputs, out, "--series-uid", "auto") == 0
    assert sitk.ReadImage(str(out / "study.nii.gz")).GetSize()[2] == 12
    record = json.loads((out / "study.json").read_text(encoding="utf-8"))["dicom_series"]
    assert record["series_uid"] == thin and record["num_series_in_folder"] == 2
    assert record["chosen_by"].startswith("--series-uid auto")
    assert not (out / "failures.csv").exists()
    # An explicit UID; the report draws the series that was predicted, not a refusal.
    out2 = tmp_path / "out2"
    assert _predict(work, inputs, out2, "--series-uid", thick, "--report") == 0
    assert sitk.ReadImage(str(out2 / "study.nii.gz")).GetSize()[2] == 8
    assert (out2 / "report" / "cases" / "study" / "axial.png").is_file()


def test_dicom_seg_without_highdicom_stops_at_once(
    work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    write_series(tmp_path / "inputs" / "case", _scan(8))
    monkeypatch.setitem(sys.modules, "highdicom", None)  # import highdicom -> ImportError
    calls = record_predicted_cases(monkeypatch)
    out = tmp_path / "out"
    assert _predict(work, tmp_path / "inputs", out, "--output-format", "dicom-seg") == EXIT_ERROR
    assert "pip install 'autojoint[dicom]'" in capsys.readouterr().err
    assert calls == []
