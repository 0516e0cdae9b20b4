"""One test per kind of bad input: ``autojoint_plan`` refuses before any work with a message
naming the file, prints no traceback, writes nothing into the work directory, and exits
with the documented code; ``--verify`` lists every problem at once."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from autojoint.cli import plan as cli_plan
from autojoint.cli.common import EXIT_DATASET, EXIT_ENVIRONMENT, EXIT_OK
from tests.synthetic import make_raw_dataset, write_volume

SHAPE = (4, 12, 12)
# The grid of case_000 in make_raw_dataset.
SPACING = (2.5, 0.8, 0.8)
ORIGIN = (0.0, -5.0, 3.0)


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    return make_raw_dataset(tmp_path / "raw", 3, shape=SHAPE, flip_case=None)


def _img(raw: Path, case: str = "case_000", ch: int = 0) -> Path:
    return raw / "imagesTr" / f"{case}_{ch:04d}.nii.gz"


def _lab(raw: Path, case: str = "case_000") -> Path:
    return raw / "labelsTr" / f"{case}.nii.gz"


def _plan(raw: Path, work: Path, capsys: pytest.CaptureFixture, *extra: str) -> tuple[int, str]:
    code = cli_plan.main(["-d", str(raw), "-w", str(work), *extra])
    out = capsys.readouterr()
    return code, out.out + out.err


def _assert_refused(
    raw: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    names: list[str],
    code: int = EXIT_DATASET,
) -> str:
    """Plan and verify both refuse, naming every file in ``names``; nothing is written."""
    work = tmp_path / "work"
    got, text = _plan(raw, work, capsys)
    assert got == code, text
    assert "Traceback" not in text
    for name in names:
        assert name in text, f"{name} not named in:\n{text}"
    assert not work.exists() or not any(work.iterdir()), list(work.rglob("*"))
    got, text = _plan(raw, work, capsys, "--verify")
    assert got == code, text
    for name in names:
        assert name in text
    assert "Traceback" not in text
    assert not work.exists() or not any(work.iterdir())
    return text


def _geometry_change(**kw: object) -> Callable[[Path], None]:
    def change(raw: Path) -> None:
        mask = np.zeros(kw.pop("shape", SHAPE), np.uint8)  # type: ignore[arg-type]
        write_volume(mask, _lab(raw), **{"spacing_zyx": SPACING, "origin": ORIGIN, **kw})  # type: ignore[arg-type]

    return change


@pytest.mark.parametrize(
    ("change", "what"),
    [
        (_geometry_change(shape=(4, 12, 13)), "size"),
        (_geometry_change(spacing_zyx=(2.5, 0.8, 0.9)), "spacing"),
        (_geometry_change(origin=(0.0, -5.0, 3.5)), "origin"),
        (_geometry_change(direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1)), "direction"),
    ],
    ids=["size", "spacing", "origin", "direction"],
)
def test_mask_on_another_grid(
    raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture, change: Callable, what: str
) -> None:
    change(raw)
    text = _assert_refused(raw, tmp_path, capsys, ["labelsTr/case_000.nii.gz"])
    assert f"{what} " in text and "tolerances" in text


def test_mask_within_tolerance_is_accepted(raw: Path, capsys: pytest.CaptureFixture) -> None:
    # 0.0005 mm origin shift and 0.005 % spacing difference: float round-off, not an error.
    mask = np.zeros(SHAPE, np.uint8)
    write_volume(mask, _lab(raw), (2.5 * (1 + 5e-5), 0.8, 0.8), origin=(0.0005, -5.0, 3.0))
    code = cli_plan.main(["-d", str(raw), "--verify"])
    assert code == EXIT_OK, capsys.readouterr()


def test_corrupt_image(raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _img(raw, "case_001").write_bytes(os.urandom(3000))
    text = _assert_refused(raw, tmp_path, capsys, ["case_001_0000.nii.gz"])
    assert "corrupt" in text


def test_truncated_image(raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # The header survives, the voxels do not: only reading every voxel finds it.
    path = _img(raw, "case_002")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    text = _assert_refused(raw, tmp_path, capsys, ["case_002_0000.nii.gz"])
    assert "truncated" in text


def test_truncated_uncompressed_image(
    raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    meta = json.loads((raw / "dataset.json").read_text(encoding="utf-8"))
    (raw / "dataset.json").write_text(json.dumps({**meta, "file_ending": ".nii"}), encoding="utf-8")
    for d in ("imagesTr", "labelsTr"):
        for p in sorted((raw / d).iterdir()):
            sitk.WriteImage(sitk.ReadImage(str(p)), str(p).removesuffix(".gz"))
            p.unlink()
    path = raw / "imagesTr" / "case_001_0000.nii"
    path.write_bytes(path.read_bytes()[:-10])
    text = _assert_refused(raw, tmp_path, capsys, ["case_001_0000.nii"])
    assert "truncated" in text


def test_undeclared_label_values(raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    mask = np.zeros(SHAPE, np.uint8)
    mask[1, 2, 3] = 5
    write_volume(mask, _lab(raw), SPACING, ORIGIN)
    text = _assert_refused(raw, tmp_path, capsys, ["labelsTr/case_000.nii.gz"])
    assert "label values [5]" in text


def test_non_integer_mask(raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    mask = np.zeros(SHAPE, np.float32)
    mask[1, 2, 3] = 0.5
    write_volume(mask, _lab(raw), SPACING, ORIGIN)
    text = _assert_refused(raw, tmp_path, capsys, ["labelsTr/case_000.nii.gz"])
    assert "non-integer" in text


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_voxels(
    raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture, bad: float
) -> None:
    img = np.full(SHAPE, -1000.0, np.float32)
    img[2, 5, 5] = bad
    write_volume(img, _img(raw), SPACING, ORIGIN)
    text = _assert_refused(raw, tmp_path, capsys, ["case_000_0000.nii.gz"])
    assert "NaN or infinite" in text


@pytest.mark.parametrize(
    ("spacing", "words"),
    [
        ((2.5, 1e-6, 1e-6), "below 0.01 mm"),  # the header in another unit: "466 TiB" later
        ((2500.0, 800.0, 800.0), "above 100 mm"),  # micrometres
    ],
    ids=["1e-6mm", "micrometres"],
)
def test_implausible_spacing(
    raw: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    spacing: tuple[float, float, float],
    words: str,
) -> None:
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(_img(raw))))
    write_volume(array, _img(raw), spacing, ORIGIN)
    write_volume(np.zeros(SHAPE, np.uint8), _lab(raw), spacing, ORIGIN)
    text = _assert_refused(raw, tmp_path, capsys, ["case_000_0000.nii.gz", "labelsTr/case_000"])
    assert words in text and "voxel spacing" in text and "true spacing in mm" in text


def test_nnunet_ignore_label(raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    meta = json.loads((raw / "dataset.json").read_text(encoding="utf-8"))
    meta["labels"]["ignore"] = len(meta["labels"])
    (raw / "dataset.json").write_text(json.dumps(meta), encoding="utf-8")
    text = _assert_refused(raw, tmp_path, capsys, ["dataset.json"])
    assert "nnU-Net's ignore label" in text


def test_unknown_diagnosis(raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    csv = raw / "diagnosesTr.csv"
    csv.write_text(csv.read_text(encoding="utf-8").replace("case_001,CAP", "case_001,flu"))
    text = _assert_refused(raw, tmp_path, capsys, ["diagnosesTr.csv:3"])
    assert "'flu'" in text


def test_csv_case_without_image(raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with open(raw / "diagnosesTr.csv", "a", encoding="utf-8") as fh:
        fh.write("case_404,CAP\n")
    text = _assert_refused(raw, tmp_path, capsys, ["diagnosesTr.csv"])
    assert "case_404" in text and "no image" in text


def test_duplicate_case_in_csv(raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with open(raw / "diagnosesTr.csv", "a", encoding="utf-8") as fh:
        fh.write("case_001,normal\n")
    text = _assert_refused(raw, tmp_path, capsys, ["diagnosesTr.csv:5"])
    assert "listed twice" in text


def test_case_names_differing_only_in_letter_case(
    raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    write_volume(np.full(SHAPE, -1000, np.int16), _img(raw, "CASE_000"), SPACING)
    text = _assert_refused(raw, tmp_path, capsys, ["imagesTr"])
    assert "'CASE_000'" in text and "'case_000'" in text and "letter case" in text


def test_empty_dataset(raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for p in (raw / "imagesTr").iterdir():
        p.unlink()
    text = _assert_refused(raw, tmp_path, capsys, ["imagesTr"])
    assert "empty dataset" in text


def test_channel_count_differs_between_cases(
    raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    write_volume(np.full(SHAPE, -1000, np.int16), _img(raw, "case_001", 1), SPACING)
    text = _assert_refused(raw, tmp_path, capsys, ["imagesTr", "case_001"])
    assert "channels [0, 1], expected [0]" in text


def test_channels_on_different_grids(
    raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    meta = json.loads((raw / "dataset.json").read_text(encoding="utf-8"))
    meta["channel_names"] = {"0": "CT", "1": "PET"}
    (raw / "dataset.json").write_text(json.dumps(meta), encoding="utf-8")
    for i in range(3):
        spacing = (3.0, 0.8, 0.8) if i == 2 else (2.5 + 0.5 * (i % 2), 0.8, 0.8)
        write_volume(
            np.zeros(SHAPE, np.int16), _img(raw, f"case_{i:03d}", 1), spacing, (10.0 * i, -5, 3)
        )
    text = _assert_refused(raw, tmp_path, capsys, ["case_002_0001.nii.gz"])
    assert "grid differs from case_002_0000.nii.gz: spacing" in text


def test_unsafe_case_name(raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # A backslash is an ordinary character on Linux but a separator on Windows.
    write_volume(np.full(SHAPE, -1000, np.int16), raw / "imagesTr" / "a\\b_0000.nii.gz")
    text = _assert_refused(raw, tmp_path, capsys, ["imagesTr"])
    assert "path separator" in text


def test_invalid_dataset_json(raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (raw / "dataset.json").write_text('{"channel_names": {"0": "CT"},', encoding="utf-8")
    text = _assert_refused(raw, tmp_path, capsys, ["dataset.json"])
    assert "not valid JSON" in text


def test_work_dir_under_a_file(raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder", encoding="utf-8")
    work = blocker / "work"
    code, text = _plan(raw, work, capsys)
    assert code == EXIT_ENVIRONMENT, text
    assert str(work) in text and "is a file" in text and "Traceback" not in text
    code, text = _plan(raw, work, capsys, "--verify")
    assert code == EXIT_ENVIRONMENT and str(work) in text
    assert blocker.read_text(encoding="utf-8") == "a file, not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_work_dir(raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    work = tmp_path / "ro"
    work.mkdir()
    work.chmod(0o555)
    try:
        code, text = _plan(raw, work, capsys)
    finally:
        work.chmod(0o755)
    assert code == EXIT_ENVIRONMENT and "not writable" in text and str(work) in text
    assert list(work.iterdir()) == []


def test_non_ct_range_in_ct_channel_is_a_warning(
    raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # An image stored in [0, 1] (already normalised) in a channel named CT.
    rng = np.random.default_rng(0)
    write_volume(rng.random(SHAPE).astype(np.float32), _img(raw), SPACING, ORIGIN)
    code, text = _plan(raw, tmp_path / "work", capsys, "--verify")
    assert code == EXIT_OK, text
    assert "warning:" in text and "case_000_0000.nii.gz" in text and "named CT" in text
    assert "0 error(s), 1 warning(s)" in text


def test_verify_lists_every_problem_at_once(
    raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    _img(raw, "case_001").write_bytes(b"garbage")
    mask = np.zeros(SHAPE, np.uint8)
    mask[0, 0, 0] = 9
    write_volume(mask, _lab(raw, "case_002"), SPACING, (20.0, -5.0, 3.0))
    csv = raw / "diagnosesTr.csv"
    csv.write_text(
        csv.read_text(encoding="utf-8").replace("case_000,COVID-19", "case_000,flu") + "ghost,CAP\n"
    )
    work = tmp_path / "work"
    code, text = _plan(raw, work, capsys, "--verify")
    assert code == EXIT_DATASET
    for fragment in [
        "case_001_0000.nii.gz: cannot be read",
        "labelsTr/case_002.nii.gz: label values [9]",
        "diagnosesTr.csv:2: unknown diagnosis 'flu'",
        "['ghost'] have no image",
    ]:
        assert fragment in text, text
    assert "4 error(s)" in text
    assert not work.exists()


def test_mask_without_image_is_a_warning(raw: Path, capsys: pytest.CaptureFixture) -> None:
    write_volume(np.zeros(SHAPE, np.uint8), _lab(raw, "case_0O1"), SPACING, ORIGIN)
    assert cli_plan.main(["-d", str(raw), "--verify"]) == EXIT_OK
    text = capsys.readouterr().out
    assert "warning:" in text and "labelsTr/case_0O1.nii.gz: mask without an image" in text


def test_csv_not_utf8(raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (raw / "diagnosesTr.csv").write_bytes(b"case,diagnosis\ncase_000,\xff\xfe\n")
    text = _assert_refused(raw, tmp_path, capsys, ["diagnosesTr.csv"])
    assert "UTF-8" in text


def test_dataset_json_not_utf8(raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (raw / "dataset.json").write_bytes(b'{"channel_names": "\xff"}')
    _assert_refused(raw, tmp_path, capsys, ["dataset.json"])


def test_corrupt_gzip_payload(raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # Valid gzip header and NIfTI header, damaged compressed voxels further on.
    path = _img(raw, "case_001")
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 2, len(data) - 8):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    _assert_refused(raw, tmp_path, capsys, ["case_001_0000.nii.gz"])
