"""DICOM input: which series of a folder is read, the refused series (uneven spacing,
missing slice, gantry tilt, another modality, several series) and zips of a series."""

from __future__ import annotations

import os
import stat
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from autojoint.io.dicom_series import (
    DicomSeriesError,
    SeriesChoice,
    choose_series,
    dicom_folder,
    list_series,
    series_problem,
)
from autojoint.io.dicom_zip import DicomZipError, unpack
from autojoint.io.image_io import ImageReadError, checked_series, read_image
from tests.dicom_series import SAGITTAL, new_uid, ramp, write_series
from tests.shared_data import shared_data_or_skip


@pytest.fixture
def several(tmp_path: Path) -> dict[str, str]:
    """A study folder of four series: thin axial CT (6 slices), thick axial CT (4), a
    sagittal CT reformat (8) and an MR series (9). Returns name -> SeriesInstanceUID."""
    uids = {n: new_uid() for n in ("thin", "thick", "sagittal", "mr")}
    folder = tmp_path / "study"
    write_series(folder, ramp((6, 16, 20)), series_uid=uids["thin"], description="thin", prefix="a")
    write_series(
        folder, ramp((4, 16, 20)), series_uid=uids["thick"], description="thick", prefix="b"
    )
    write_series(
        folder, ramp((8, 16, 20)), series_uid=uids["sagittal"], orientation=SAGITTAL, prefix="c"
    )
    write_series(folder, ramp((9, 16, 20)), series_uid=uids["mr"], modality="MR", prefix="d")
    return uids


def test_one_series_reads_voxel_for_voxel(tmp_path: Path) -> None:
    volume = ramp()
    write_series(tmp_path / "ct", volume, spacing=(2.5, 0.7, 0.8), origin=(1.0, 2.0, 3.0))
    array, geometry = read_image(tmp_path / "ct")
    np.testing.assert_array_equal(array, volume)
    np.testing.assert_allclose(geometry.spacing, (2.5, 0.7, 0.8))
    np.testing.assert_allclose(geometry.origin, (1.0, 2.0, 3.0))


def test_several_series_are_refused_with_the_list(tmp_path: Path, several: dict[str, str]) -> None:
    with pytest.raises(ImageReadError) as caught:
        read_image(tmp_path / "study")
    message = str(caught.value)
    assert f"{tmp_path / 'study'}: holds 4 DICOM series" in message
    for uid in several.values():
        assert uid in message
    assert "SeriesDescription 'thin', 6 slice(s), Modality CT" in message
    assert "Modality MR" in message and "not axial" in message
    assert "--series-uid UID" in message and "--series-uid auto" in message


def test_series_uid_picks_one(tmp_path: Path, several: dict[str, str]) -> None:
    choice = SeriesChoice.parse(["1.2.3.404", several["thick"]])  # UIDs absent here are ignored
    pick = checked_series(tmp_path / "study", choice)
    assert (pick.series.series_uid, pick.series.num_slices) == (several["thick"], 4)
    assert (pick.num_series, pick.rule) == (4, "--series-uid")
    assert pick.to_dict()["description"] == "thick"


def test_auto_takes_the_axial_ct_series_with_most_slices(
    tmp_path: Path, several: dict[str, str]
) -> None:
    # Not the sagittal reformat (8 slices) nor the MR series (9): the axial CT with 6.
    pick = checked_series(tmp_path / "study", SeriesChoice.parse(["auto"]))
    assert pick.series.series_uid == several["thin"]
    assert pick.rule.startswith("--series-uid auto")
    # An explicit UID wins over the rule.
    choice = SeriesChoice.parse(["auto", several["thick"]])
    assert checked_series(tmp_path / "study", choice).series.series_uid == several["thick"]


def test_auto_refuses_a_tie(tmp_path: Path) -> None:
    write_series(tmp_path / "two", ramp((5, 8, 8)), description="lung kernel", prefix="a")
    write_series(tmp_path / "two", ramp((5, 8, 8)), description="soft kernel", prefix="b")
    with pytest.raises(DicomSeriesError, match="2 axial CT series have the most slices"):
        choose_series(tmp_path / "two", SeriesChoice(use_auto=True))


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"positions": [0, 2, 4, 6.1, 8, 10]}, ["uneven slice spacing", "slice_003.dcm", "1%"]),
        ({"positions": [0, 2, 4, 8, 10, 12]}, ["1 slice(s) are missing", "slice_002.dcm"]),
        ({"positions": [0, 2, 4, 4, 6, 8]}, ["same position", "slice_003.dcm"]),
        ({"shift_per_slice": (0.0, 0.5, 0.0)}, ["gantry tilt", "14.0 degrees", "2.5 mm"]),
    ],
    ids=["uneven", "missing", "duplicate", "tilt"],
)
def test_irregular_slices_are_refused(tmp_path: Path, kwargs: dict, words: list[str]) -> None:
    write_series(tmp_path / "bad", ramp(), **kwargs)
    with pytest.raises(ImageReadError) as caught:
        read_image(tmp_path / "bad")
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'bad'}: ")
    for word in words:
        assert word in message
    assert "dcm2niix" in message or "again" in message or "Keep one" in message  # the fix


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"orientation": SAGITTAL}, "has another orientation than"),
        ({"volume": ramp((1, 12, 20))}, "has another size than"),
    ],
    ids=["localizer", "size"],
)
def test_a_foreign_slice_under_the_series_uid_is_refused(
    tmp_path: Path, extra: dict, words: str
) -> None:
    uid = new_uid()
    write_series(tmp_path / "s", ramp(), series_uid=uid)
    volume = extra.pop("volume", ramp((1, 16, 20)))
    write_series(tmp_path / "s", volume, series_uid=uid, positions=[20.0], prefix="z", **extra)
    (series,) = list_series(tmp_path / "s")
    problem = series_problem(series)
    assert problem is not None and words in problem and "keep only the slices" in problem


def test_spacing_within_tolerance_and_a_small_tilt_are_read(tmp_path: Path) -> None:
    # 0.5 % off the grid (positions written with two decimals) and 0.05 mm of drift.
    write_series(tmp_path / "ok", ramp(), positions=[0, 2, 4, 6.01, 8, 10])
    write_series(tmp_path / "ok2", ramp(), prefix="b", shift_per_slice=(0.0, 0.01, 0.0))
    assert series_problem(list_series(tmp_path / "ok")[0]) is None
    assert series_problem(list_series(tmp_path / "ok2")[0]) is None


def test_other_modality_is_refused_when_ct_is_expected(tmp_path: Path) -> None:
    write_series(tmp_path / "mr", ramp(), modality="MR")
    with pytest.raises(DicomSeriesError, match=r"Modality is MR, but this model reads CT"):
        checked_series(tmp_path / "mr", modality="CT")
    assert checked_series(tmp_path / "mr").series.modality == "MR"  # no model, no refusal


def _zip(path: Path, files: dict[str, Path | bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in files.items():
            if isinstance(content, Path):
                archive.write(content, name)
            else:
                archive.writestr(name, content)
    return path


def test_a_zip_reads_as_its_folder_and_is_cleaned_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    volume = ramp()
    files = write_series(tmp_path / "series", volume)
    # A zipped series folder, with the folder macOS adds beside it.
    members: dict[str, Path | bytes] = {f"CASE/{f.name}": f for f in files}
    members["__MACOSX/CASE/._slice_000.dcm"] = b"resource fork"
    archive = _zip(tmp_path / "CASE.zip", members)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    array, _ = read_image(archive)
    np.testing.assert_array_equal(array, volume)
    assert list(scratch.iterdir()) == []  # the unpacked copy is gone


def test_zip_errors_name_the_zip_not_the_temp_folder(tmp_path: Path) -> None:
    files = write_series(tmp_path / "series", ramp(), positions=[0, 2, 4, 8, 10, 12])
    archive = _zip(tmp_path / "gap.zip", {f.name: f for f in files})
    with pytest.raises(ImageReadError, match=r"gap\.zip: about 1 slice\(s\) are missing"):
        read_image(archive)


@pytest.mark.parametrize(
    ("member", "why"),
    [
        ("../escape.dcm", "climbs out"),
        ("CASE/../../escape.dcm", "climbs out"),
        ("/etc/escape.dcm", "has an absolute path"),
        ("C:/escape.dcm", "has an absolute path"),
    ],
)
def test_unsafe_zip_members_are_refused(tmp_path: Path, member: str, why: str) -> None:
    archive = _zip(tmp_path / "evil.zip", {"ok.dcm": b"x", member: b"payload"})
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(DicomZipError, match=f"member '{member}' {why}"):
        unpack(archive, dest)
    assert not (tmp_path / "escape.dcm").exists()
    assert list(dest.iterdir()) == []  # nothing written before the refusal


def test_symlink_member_and_several_folders_are_refused(tmp_path: Path) -> None:
    link = zipfile.ZipInfo("CASE/link.dcm")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(tmp_path / "link.zip", "w") as archive:
        archive.writestr(link, "/etc/passwd")
    with pytest.raises(DicomZipError, match="is a symbolic link"):
        unpack(tmp_path / "link.zip", tmp_path / "d1")
    archive_path = _zip(tmp_path / "two.zip", {"a/x.dcm": b"x", "b/y.dcm": b"y"})
    with pytest.raises(DicomZipError, match="files in 2 folders"):
        unpack(archive_path, tmp_path / "d2")
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with (
        pytest.raises(DicomZipError, match=r"bad\.zip: cannot be unpacked"),
        dicom_folder(tmp_path / "bad.zip"),
    ):
        pass


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("parts", "shape", "spacing"),
    [
        (("covid_ct_md", "dicom_P002_subset"), (24, 512, 512), (2.0, 0.6035, 0.6035)),
        (
            ("totalsegmentator", "tests", "reference_files", "example_ct_dicom"),
            (20, 512, 512),
            (2.0, 0.9766, 0.9766),
        ),
    ],
    ids=["covid_ct_md_jpeg_lossless", "totalsegmentator_jpeg2000"],
)
def test_real_series_pass_the_checks(
    parts: tuple[str, ...], shape: tuple[int, ...], spacing: tuple[float, ...]
) -> None:
    folder = shared_data_or_skip(*parts)
    pick = checked_series(folder, modality="CT")
    assert (pick.num_series, pick.series.num_slices, pick.series.is_axial) == (1, shape[0], True)
    array, geometry = read_image(folder)
    assert array.shape == shape
    np.testing.assert_allclose(geometry.spacing, spacing, atol=1e-3)
    assert os.path.isdir(folder)
