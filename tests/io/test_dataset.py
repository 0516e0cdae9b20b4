"""Raw dataset discovery and validation: the layout, the diagnoses CSV and their errors."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from autojoint.io.dataset import DatasetError, load_raw_dataset, read_diagnoses_csv
from tests.synthetic import CLASSES, LABELS, make_raw_dataset, write_volume

SHAPE = (4, 12, 12)


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    return make_raw_dataset(tmp_path / "raw", 4, shape=SHAPE)


def _edit_json(root: Path, **changes) -> None:
    meta = json.loads((root / "dataset.json").read_text(encoding="utf-8"))
    meta.update(changes)
    (root / "dataset.json").write_text(json.dumps(meta), encoding="utf-8")


def test_valid_dataset_loads(raw: Path) -> None:
    ds = load_raw_dataset(raw)
    assert ds.root == raw
    assert ds.classes == tuple(CLASSES)
    assert ds.has_diagnoses
    assert ds.labels == LABELS
    assert ds.channel_names == {"0": "CT"}
    assert ds.num_channels == 1
    assert ds.file_ending == ".nii.gz"
    assert [c.case_id for c in ds.cases] == ["case_000", "case_001", "case_002", "case_003"]
    assert [c.diagnosis for c in ds.cases] == [CLASSES[i % 3] for i in range(4)]
    for c in ds.cases:
        assert c.image_paths == (raw / "imagesTr" / f"{c.case_id}_0000.nii.gz",)
        assert c.label_path == raw / "labelsTr" / f"{c.case_id}.nii.gz"


def test_plain_nnunet_dataset_has_no_diagnoses(tmp_path: Path) -> None:
    root = make_raw_dataset(tmp_path / "raw", 3, with_diagnoses=False, shape=SHAPE)
    assert not (root / "diagnosesTr.csv").exists()
    ds = load_raw_dataset(root)
    assert ds.classes == ()
    assert not ds.has_diagnoses
    assert len(ds.cases) == 3
    assert all(c.diagnosis is None and c.label_path is not None for c in ds.cases)


def test_case_without_mask_and_csv_row_without_diagnosis(raw: Path) -> None:
    (raw / "labelsTr" / "case_001.nii.gz").unlink()
    lines = (raw / "diagnosesTr.csv").read_text(encoding="utf-8").splitlines()
    lines[1] = "case_000,"  # header is line 0; an empty diagnosis is allowed
    (raw / "diagnosesTr.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    ds = load_raw_dataset(raw)
    by_id = {c.case_id: c for c in ds.cases}
    assert by_id["case_001"].label_path is None
    assert by_id["case_001"].diagnosis == "CAP"
    assert by_id["case_000"].diagnosis is None


def test_multichannel_dataset(tmp_path: Path) -> None:
    root = make_raw_dataset(tmp_path / "raw", 2, with_diagnoses=False, shape=SHAPE)
    for i in range(2):
        write_volume(np.zeros(SHAPE, np.int16), root / "imagesTr" / f"case_{i:03d}_0001.nii.gz")
    _edit_json(root, channel_names={"0": "CT", "1": "PET"})
    ds = load_raw_dataset(root)
    assert ds.num_channels == 2
    assert [p.name for p in ds.cases[0].image_paths] == [
        "case_000_0000.nii.gz",
        "case_000_0001.nii.gz",
    ]


def test_classes_without_csv_warns_but_loads(raw: Path, caplog: pytest.LogCaptureFixture) -> None:
    (raw / "diagnosesTr.csv").unlink()
    with caplog.at_level(logging.WARNING, logger="autojoint.io.dataset"):
        ds = load_raw_dataset(raw)
    assert all(c.diagnosis is None for c in ds.cases)
    assert "diagnosesTr.csv" in caplog.text


# --- errors ----------------------------------------------------------------------------------


def test_missing_dataset_json(raw: Path) -> None:
    (raw / "dataset.json").unlink()
    with pytest.raises(DatasetError, match=r"dataset.json: not found"):
        load_raw_dataset(raw)


def test_empty_images_folder(raw: Path) -> None:
    for p in (raw / "imagesTr").iterdir():
        p.unlink()
    with pytest.raises(DatasetError, match=r"imagesTr: empty dataset"):
        load_raw_dataset(raw)


def test_missing_images_folder(raw: Path) -> None:
    for p in (raw / "imagesTr").iterdir():
        p.unlink()
    (raw / "imagesTr").rmdir()
    with pytest.raises(DatasetError, match=r"imagesTr: not found"):
        load_raw_dataset(raw)


def test_unknown_diagnosis_names_csv_and_class(raw: Path) -> None:
    text = (
        (raw / "diagnosesTr.csv")
        .read_text(encoding="utf-8")
        .replace("case_002,normal", "case_002,influenza")
    )
    (raw / "diagnosesTr.csv").write_text(text, encoding="utf-8")
    with pytest.raises(DatasetError) as info:
        load_raw_dataset(raw)
    msg = str(info.value)
    assert "diagnosesTr.csv:4" in msg  # file and line (header is line 1)
    assert "'influenza'" in msg
    assert "'case_002'" in msg
    assert "COVID-19" in msg  # lists the known classes


def test_wrong_csv_header(raw: Path) -> None:
    lines = (raw / "diagnosesTr.csv").read_text(encoding="utf-8").splitlines()
    lines[0] = "id,label"
    (raw / "diagnosesTr.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"diagnosesTr.csv: header must be 'case,diagnosis'"):
        load_raw_dataset(raw)


def test_empty_csv_is_a_header_error(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("", encoding="utf-8")
    with pytest.raises(DatasetError, match="header must be"):
        read_diagnoses_csv(path, ("a", "b"))


def test_duplicate_csv_case(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("case,diagnosis\nx,a\nx,b\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"d.csv:3: case 'x' listed twice"):
        read_diagnoses_csv(path, ("a", "b"))


def test_csv_case_without_image(raw: Path) -> None:
    with open(raw / "diagnosesTr.csv", "a", encoding="utf-8") as fh:
        fh.write("ghost_case,CAP\n")
    with pytest.raises(DatasetError, match=r"\['ghost_case'\] have no image"):
        load_raw_dataset(raw)


def test_csv_without_classes_in_json(raw: Path) -> None:
    meta = json.loads((raw / "dataset.json").read_text(encoding="utf-8"))
    del meta["classes"]
    (raw / "dataset.json").write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(DatasetError, match="no 'classes' list"):
        load_raw_dataset(raw)


@pytest.mark.parametrize("name", ["case_000.nii.gz", "case_000_0.nii.gz", "case_000_0000.nrrd"])
def test_bad_image_file_name(raw: Path, name: str) -> None:
    write_volume(np.zeros(SHAPE, np.int16), raw / "imagesTr" / name)
    with pytest.raises(DatasetError, match=rf"{name}: unexpected file name"):
        load_raw_dataset(raw)


def test_hidden_files_are_ignored(raw: Path) -> None:
    (raw / "imagesTr" / ".DS_Store").write_bytes(b"\0")
    assert len(load_raw_dataset(raw).cases) == 4


def test_missing_channel(raw: Path) -> None:
    _edit_json(raw, channel_names={"0": "CT", "1": "PET"})
    write_volume(np.zeros(SHAPE, np.int16), raw / "imagesTr" / "case_000_0001.nii.gz")
    with pytest.raises(
        DatasetError, match=r"case 'case_001' has channels \[0\], expected \[0, 1\]"
    ):
        load_raw_dataset(raw)


@pytest.mark.parametrize(
    "labels",
    [
        {"background": 0, "ground_glass": 1, "consolidation": 3},
        {"background": 0, "ground_glass": 2},
        {"background": 0, "ground_glass": 1.0},
    ],
    ids=["gap", "skip-one", "float"],
)
def test_label_values_must_be_consecutive(raw: Path, labels: dict) -> None:
    _edit_json(raw, labels=labels)
    with pytest.raises(DatasetError, match=r"dataset.json: label values must be consecutive"):
        load_raw_dataset(raw)


def test_nnunet_ignore_label_is_refused_not_trained(raw: Path) -> None:
    # Consecutive values, so only its name tells it apart from a lesion label.
    _edit_json(raw, labels={**LABELS, "ignore": 3})
    with pytest.raises(DatasetError) as info:
        load_raw_dataset(raw)
    message = str(info.value)
    assert str(raw / "dataset.json") in message and "label 'ignore' = 3" in message
    assert "does not support it" in message and "delete 'ignore' from 'labels'" in message


def test_background_must_be_zero(raw: Path) -> None:
    _edit_json(raw, labels={"background": 1, "lesion": 0})
    with pytest.raises(DatasetError, match="background = 0"):
        load_raw_dataset(raw)


@pytest.mark.parametrize("key", ["channel_names", "labels", "file_ending"])
def test_missing_required_key(raw: Path, key: str) -> None:
    meta = json.loads((raw / "dataset.json").read_text(encoding="utf-8"))
    del meta[key]
    (raw / "dataset.json").write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(DatasetError, match=rf"missing key '{key}'"):
        load_raw_dataset(raw)


@pytest.mark.parametrize("classes", [["only"], ["a", "a"], "COVID-19", [1, 2]])
def test_bad_classes(raw: Path, classes: object) -> None:
    _edit_json(raw, classes=classes)
    with pytest.raises(DatasetError, match="'classes' must"):
        load_raw_dataset(raw)


def test_no_mask_and_no_diagnosis_anywhere(tmp_path: Path) -> None:
    root = make_raw_dataset(tmp_path / "raw", 2, with_diagnoses=False, shape=SHAPE)
    for p in (root / "labelsTr").iterdir():
        p.unlink()
    with pytest.raises(DatasetError, match="no case has a mask"):
        load_raw_dataset(root)


def test_dataset_json_not_an_object(raw: Path) -> None:
    (raw / "dataset.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(DatasetError, match="must hold a JSON object"):
        load_raw_dataset(raw)
