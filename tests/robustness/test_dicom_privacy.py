"""No DICOM patient identifier reaches a log line or an output file."""

from __future__ import annotations

import gzip
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from autojoint.inference.predictor import find_input_cases
from autojoint.io.case_loading import load_channels
from autojoint.io.image_io import write_image
from tests.shared_data import shared_data_or_skip

# Patient and study identifiers: name, ID, birth date, study/series/instance UIDs.
IDENTIFYING_TAGS = ("0010|0010", "0010|0020", "0010|0030", "0020|000d", "0020|000e", "0008|0018")


def _identifiers(series: Path) -> set[str]:
    values = set()
    for f in sorted(series.iterdir()):
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(f))
        reader.ReadImageInformation()
        for tag in IDENTIFYING_TAGS:
            if reader.HasMetaDataKey(tag) and len(reader.GetMetaData(tag).strip()) >= 4:
                values.add(reader.GetMetaData(tag).strip())
    return values


@pytest.mark.realdata
def test_no_patient_identifier_in_logs_or_outputs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = shared_data_or_skip("covid_ct_md", "dicom_P002_subset")
    # A neutral folder name: the original's name holds the patient id itself.
    series = tmp_path / "scans" / "case_a"
    shutil.copytree(source, series)
    identifiers = _identifiers(series)
    assert "P002" in identifiers  # the test data does carry an identifier to leak

    out = tmp_path / "pred"
    with caplog.at_level(logging.DEBUG):
        (case,) = find_input_cases(tmp_path / "scans", 1)
        data, geo = load_channels(case.paths)
        mask = (data[0] > -500).astype(np.uint8)
        write_image(mask, geo, out / f"{case.case_id}.nii.gz")
        write_image(data[0], geo, out / "image.nii.gz")
    written = [gzip.decompress(p.read_bytes()) for p in sorted(out.iterdir())]
    assert len(written) == 2
    for value in identifiers:
        assert value not in caplog.text
        for blob in written:
            assert value.encode() not in blob, value
