"""DICOM-SEG output: written with highdicom, read back with highdicom, equal to the mask
voxel for voxel on the source grid; sources a SEG cannot reference are refused."""

from __future__ import annotations

import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from autojoint.inference.dicom_seg import (
    MissingExtraError,
    SegSource,
    SegSourceError,
    load_seg_source,
    require_highdicom,
    write_dicom_seg,
)
from autojoint.io.image_io import checked_series, read_dicom_series
from tests.dicom_series import ramp, write_series
from tests.shared_data import shared_data_or_skip

hd = pytest.importorskip("highdicom", reason="the 'dicom' extra (highdicom) is not installed")
pydicom = pytest.importorskip("pydicom")

LABELS = {1: "ground_glass", 2: "consolidation"}


def read_seg(path: Path, source: SegSource) -> np.ndarray:
    """The label map of a SEG, frame ``i`` on ``source``'s slice ``i`` (empty frames 0)."""
    seg = hd.seg.segread(path)
    uids = [ds.SOPInstanceUID for ds in source.datasets]
    return seg.get_pixels_by_source_instance(uids, combine_segments=True)


def _known_mask(shape: tuple[int, int, int]) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[1:3, 2:6, 3:9] = 1
    mask[4, 5:8, 1:4] = 2
    mask[2, 0, 0] = 2  # a corner: row and column order would show
    return mask


def test_round_trip_on_a_synthetic_series(tmp_path: Path) -> None:
    files = write_series(tmp_path / "ct", ramp((6, 16, 20)), spacing=(2.0, 0.7, 0.8))
    pick = checked_series(tmp_path / "ct")
    image, _ = read_dicom_series(pick.series)
    mask = _known_mask(image.shape)
    source = load_seg_source(pick.series)
    write_dicom_seg(tmp_path / "out" / "case_seg.dcm", mask, source, LABELS)
    np.testing.assert_array_equal(read_seg(tmp_path / "out" / "case_seg.dcm", source), mask)
    seg = hd.seg.segread(tmp_path / "out" / "case_seg.dcm")
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["ground_glass", "consolidation"]
    assert seg.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Lesion"
    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    assert seg.StudyInstanceUID == first.StudyInstanceUID
    assert seg.FrameOfReferenceUID == first.FrameOfReferenceUID
    referenced = seg.ReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == first.SeriesInstanceUID
    assert {i.ReferencedSOPInstanceUID for i in referenced.ReferencedInstanceSequence} == {
        ds.SOPInstanceUID for ds in source.datasets
    }
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["case_seg.dcm"]  # no temp left
    # The same prediction written again keeps its UIDs (a PACS replaces, not duplicates).
    write_dicom_seg(tmp_path / "again.dcm", mask, source, LABELS)
    assert hd.seg.segread(tmp_path / "again.dcm").SOPInstanceUID == seg.SOPInstanceUID
    # A SEG beside its series is no second image series: the folder still reads.
    shutil.copy(tmp_path / "again.dcm", tmp_path / "ct" / "seg.dcm")
    assert checked_series(tmp_path / "ct").num_series == 1


def test_an_empty_mask_is_a_seg_of_zeros(tmp_path: Path) -> None:
    write_series(tmp_path / "ct", ramp((4, 8, 10)))
    source = load_seg_source(checked_series(tmp_path / "ct").series)
    write_dicom_seg(tmp_path / "empty.dcm", np.zeros((4, 8, 10), np.uint8), source, LABELS)
    np.testing.assert_array_equal(read_seg(tmp_path / "empty.dcm", source), 0)


def test_a_mask_off_the_source_grid_is_refused(tmp_path: Path) -> None:
    write_series(tmp_path / "ct", ramp((4, 8, 10)))
    source = load_seg_source(checked_series(tmp_path / "ct").series)
    with pytest.raises(ValueError, match=r"not the source grid \(4, 8, 10\)"):
        write_dicom_seg(tmp_path / "x.dcm", np.zeros((4, 10, 8), np.uint8), source, LABELS)


def test_a_source_without_uids_is_refused(tmp_path: Path) -> None:
    write_series(tmp_path / "ct", ramp((3, 8, 8)))
    victim = sorted((tmp_path / "ct").iterdir())[1]
    ds = pydicom.dcmread(victim)
    del ds.FrameOfReferenceUID
    ds.save_as(victim)
    with pytest.raises(SegSourceError, match=f"{victim.name} has no FrameOfReferenceUID"):
        load_seg_source(checked_series(tmp_path / "ct").series)


def test_missing_highdicom_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "highdicom", None)  # import highdicom -> ImportError
    with pytest.raises(MissingExtraError, match=r"pip install 'autojoint\[dicom\]'"):
        require_highdicom()


def with_uids(source: Path, dest: Path) -> Path:
    """A copy of a de-identified series with the UIDs it lost given back (new ones), the
    pixel data left as it was (compressed)."""
    dest.mkdir()
    uid = pydicom.uid.generate_uid
    study, series, frame = uid(), uid(), uid()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the originals' UUID-style UIDs are invalid
        for f in sorted(source.iterdir()):
            ds = pydicom.dcmread(f)
            ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = pydicom.uid.CTImageStorage
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid()
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
            ds.save_as(dest / f.name)
    return dest


REAL = [
    (("covid_ct_md", "dicom_P002_subset"), "SOPInstanceUID"),  # JPEG-Lossless
    (("totalsegmentator", "tests", "reference_files", "example_ct_dicom"), "SOPClassUID"),
]


@pytest.mark.realdata
@pytest.mark.parametrize(("parts", "missing"), REAL, ids=["covid_ct_md", "totalsegmentator"])
def test_real_series_round_trip(tmp_path: Path, parts: tuple[str, ...], missing: str) -> None:
    original = shared_data_or_skip(*parts)
    # As shipped, both are de-identified without UIDs: no SEG can reference them.
    with pytest.raises(SegSourceError, match=f"has no {missing}. A DICOM-SEG must reference"):
        load_seg_source(checked_series(original).series)
    # With UIDs given back, only the headers are needed (the pixels stay compressed).
    pick = checked_series(with_uids(original, tmp_path / "series"), modality="CT")
    image, _ = read_dicom_series(pick.series)
    mask = (image > -300).astype(np.uint8) + (image > 200)
    source = load_seg_source(pick.series)
    write_dicom_seg(tmp_path / "seg.dcm", mask, source, LABELS)
    np.testing.assert_array_equal(read_seg(tmp_path / "seg.dcm", source), mask)
    shutil.rmtree(tmp_path / "series")
