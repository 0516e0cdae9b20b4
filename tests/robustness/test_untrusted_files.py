"""Untrusted files: checkpoints cannot run code, plans and fingerprints are type-checked on
load, case names cannot escape their folder, predictions never overwrite their inputs."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from autojoint.cli import plan as cli_plan
from autojoint.cli import predict as cli_predict
from autojoint.cli import train as cli_train
from autojoint.cli.common import EXIT_ERROR, EXIT_USAGE
from autojoint.fingerprint.schema import Fingerprint
from autojoint.inference.predictor import discover_input_cases, find_input_cases
from autojoint.io.dataset import read_diagnoses_csv
from autojoint.io.image_io import ImageGeometry
from autojoint.io.paths import (
    UnsafePathError,
    case_file,
    check_case_name,
    check_not_an_input,
    check_output_dir,
)
from autojoint.planning.schema import Plan
from autojoint.preprocessing.preprocess import PreprocessedCase, save_preprocessed
from autojoint.runtime.checkpoint import CHECKPOINT_FORMAT_VERSION, load_checkpoint
from tests.synthetic import write_volume

PLANS = Path(__file__).resolve().parents[2] / "plans"


class _Payload:
    """Unpickling this object calls ``os.mkdir(marker)``: code run by merely loading."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple:
        return (os.mkdir, (self.marker,))


def _malicious_checkpoint(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format_version": CHECKPOINT_FORMAT_VERSION, "network": _Payload(marker)}, path)


def test_payload_is_live_without_weights_only(tmp_path: Path) -> None:
    # The control: a plain unpickler does run it, so the next test is meaningful.
    marker = tmp_path / "pwned_control"
    _malicious_checkpoint(tmp_path / "ckpt.pt", marker)
    torch.load(tmp_path / "ckpt.pt", weights_only=False)
    assert marker.exists()


def test_malicious_checkpoint_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "checkpoint_final.pt"
    _malicious_checkpoint(path, marker)
    with pytest.raises(ValueError, match="checkpoint_final.pt: cannot be loaded"):
        load_checkpoint(path)
    assert not marker.exists()


def test_predict_refuses_malicious_checkpoint_without_running_it(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    marker = tmp_path / "pwned"
    work = tmp_path / "work"
    _malicious_checkpoint(work / "fold_0" / "checkpoint_final.pt", marker)
    (tmp_path / "in").mkdir()
    args = ["-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-w", str(work)]
    assert cli_predict.main(args) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "checkpoint_final.pt" in err and "Traceback" not in err
    assert not marker.exists()


# --- plans.json and fingerprint.json ---------------------------------------------------------


def _reference_plan() -> dict:
    return json.loads((PLANS / "reference_demo_plan.json").read_text(encoding="utf-8"))


PLAN_CORRUPTIONS = {
    "truncated": (lambda text: text[: len(text) // 2], "not valid JSON"),
    "top-level list": (lambda text: "[1, 2, 3]", "must hold a JSON object"),
    "patch size as text": (
        lambda text: json.dumps({**json.loads(text), "patch_size": "64x64x64"}),
        "'patch_size' must be a list",
    ),
    "stride as text": (
        lambda text: json.dumps(
            {
                **json.loads(text),
                "topology": {**json.loads(text)["topology"], "strides": [[1, 1, "x"]]},
            }
        ),
        "'topology.strides[0][2]' must be an integer",
    ),
    "batch size null": (
        lambda text: json.dumps({**json.loads(text), "batch_size": None}),
        "'batch_size' must be an integer",
    ),
    "network switch as string": (
        lambda text: json.dumps(
            {**json.loads(text), "network": {**json.loads(text)["network"], "cross_stitch": "yes"}}
        ),
        "'network.cross_stitch' must be true/false",
    ),
}


@pytest.mark.parametrize("kind", sorted(PLAN_CORRUPTIONS))
def test_corrupted_plans_json_is_refused_by_every_reader(
    tmp_path: Path, capsys: pytest.CaptureFixture, kind: str
) -> None:
    corrupt, expected = PLAN_CORRUPTIONS[kind]
    work = tmp_path / "work"
    work.mkdir()
    (work / "plans.json").write_text(corrupt(json.dumps(_reference_plan())), encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(expected)):
        Plan.load(work / "plans.json")
    for main, args in [
        (cli_train.main, ["0", "-w", str(work)]),
        (cli_plan.main, ["-w", str(work), "--explain"]),
    ]:
        assert main(args) == EXIT_ERROR
        err = capsys.readouterr().err
        assert "plans.json" in err and expected in err and "Traceback" not in err


def test_reference_plan_passes_the_type_check() -> None:
    assert Plan.from_dict(_reference_plan()).patch_size == tuple(_reference_plan()["patch_size"])


def test_corrupted_fingerprint_is_refused(tmp_path: Path) -> None:
    from tests.fingerprints import make_fingerprint

    path = tmp_path / "fingerprint.json"
    make_fingerprint([(1.0, 1.0, 1.0)] * 2, [(8, 8, 8)] * 2).save(path)
    assert Fingerprint.load(path).cases[0].shape == (8, 8, 8)
    d = json.loads(path.read_text(encoding="utf-8"))
    d["cases"][1]["spacing"] = [1.0, "one", 1.0]
    path.write_text(json.dumps(d), encoding="utf-8")
    with pytest.raises(ValueError, match=r"fingerprint.json: .*'cases\[1\]\.spacing\[1\]'"):
        Fingerprint.load(path)
    path.write_text("null", encoding="utf-8")
    with pytest.raises(ValueError, match="fingerprint.json: must hold a JSON object"):
        Fingerprint.load(path)


# --- path traversal ------------------------------------------------------------------------

UNSAFE_NAMES = ["../x", "..", "a/b", "a\\b", "/etc/passwd", "", ".hidden", " x", "x\n", "a\x00b"]


@pytest.mark.parametrize("name", UNSAFE_NAMES)
def test_unsafe_case_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(UnsafePathError, match="source.csv"):
        check_case_name(name, "source.csv")
    with pytest.raises(UnsafePathError):
        case_file(tmp_path / "out", name, ".nii.gz")


@pytest.mark.parametrize("name", ["case_001", "P-17", "Ünïcode 3", "a.b"])
def test_safe_case_names_pass(tmp_path: Path, name: str) -> None:
    assert check_case_name(name, "x") == name
    assert case_file(tmp_path, name, ".npz") == tmp_path / f"{name}.npz"


def test_preprocessing_never_writes_outside_its_folder(tmp_path: Path) -> None:
    out = tmp_path / "a" / "preprocessed"
    geo = ImageGeometry((2, 2, 2), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    arr = np.zeros((1, 2, 2, 2), np.float32)
    case = PreprocessedCase("../escaped", arr, None, arr, None, geo, ((0, 2),) * 3, None)
    with pytest.raises(UnsafePathError, match="'../escaped'"):
        save_preprocessed(case, out)
    assert not list(tmp_path.rglob("*escaped*"))


def test_predictor_inputs_with_unsafe_names_are_refused(tmp_path: Path) -> None:
    inp = tmp_path / "in"
    write_volume(np.zeros((2, 3, 3), np.int16), inp / "ok.nii.gz")
    write_volume(np.zeros((2, 3, 3), np.int16), inp / "a\\..\\evil.nii.gz")
    # The predictor reports an unsafe name as a failed case and predicts the others.
    cases, failures = discover_input_cases(inp, 1)
    assert [c.case_id for c in cases] == ["ok"]
    assert len(failures) == 1 and "path separator" in failures[0].reason
    with pytest.raises(ValueError, match="path separator"):
        find_input_cases(inp, 1)


def test_csv_row_cannot_name_a_file_outside(tmp_path: Path) -> None:
    # A CSV case name is only ever matched against image files, never used as a path;
    # the dataset check reports it as a case without image.
    csv = tmp_path / "d.csv"
    csv.write_text("case,diagnosis\n../../x,a\n", encoding="utf-8")
    assert read_diagnoses_csv(csv, ("a", "b")) == {"../../x": "a"}


# --- outputs never overwrite inputs ----------------------------------------------------------


def test_output_folder_checks(tmp_path: Path) -> None:
    inp = tmp_path / "scans"
    inp.mkdir()
    (inp / "a.nii.gz").write_bytes(b"x")
    for bad in [inp, inp / "pred", inp / "." / "pred" / ".."]:
        with pytest.raises(UnsafePathError, match="inside\\) the input folder"):
            check_output_dir([inp], bad)
    check_output_dir([inp], tmp_path / "pred")
    check_output_dir([inp], tmp_path / "scans_pred")  # a sibling sharing the prefix is fine
    with pytest.raises(UnsafePathError, match="would overwrite the input"):
        check_not_an_input(inp / "a.nii.gz", [inp / "a.nii.gz"])
    with pytest.raises(UnsafePathError, match="would overwrite the input"):
        check_not_an_input(inp / "b.nii.gz", [inp])
    check_not_an_input(tmp_path / "b.nii.gz", [inp])


def test_predict_cli_refuses_output_in_input(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    inp = tmp_path / "scans"
    write_volume(np.zeros((2, 3, 3), np.int16), inp / "case.nii.gz")
    before = hashlib.sha256((inp / "case.nii.gz").read_bytes()).hexdigest()
    for out in [inp, inp / "pred"]:
        with pytest.raises(SystemExit) as info:
            cli_predict.main(["-i", str(inp), "-o", str(out), "-w", str(tmp_path / "w")])
        assert info.value.code == EXIT_USAGE
        assert "input folder" in capsys.readouterr().err
    assert hashlib.sha256((inp / "case.nii.gz").read_bytes()).hexdigest() == before
    assert sorted(p.name for p in inp.iterdir()) == ["case.nii.gz"]


@pytest.mark.parametrize(
    ("names", "dicom_dir"),
    [
        (("p1.nii.gz", "p1_0000.nii.gz"), False),  # plain and nnU-Net channel naming
        (("p1.nii.gz", "p1.mha"), False),  # two formats of one case
        (("p1.nii.gz",), True),  # a DICOM series folder p1/ beside p1.nii.gz
    ],
)
def test_two_files_for_one_case_channel_are_refused_not_guessed(
    tmp_path: Path, names: tuple[str, ...], dicom_dir: bool
) -> None:
    inp = tmp_path / "in"
    write_volume(np.zeros((2, 3, 3), np.int16), inp / "ok.nii.gz")
    for name in names:
        write_volume(np.full((2, 3, 3), 7, np.int16), inp / name)
    if dicom_dir:
        (inp / "p1").mkdir()
    cases, failures = discover_input_cases(inp, 1)
    # The unambiguous case is still predicted; the clashing one is reported with every file.
    assert [c.case_id for c in cases] == ["ok"]
    assert [f.case_id for f in failures] == ["p1"]
    listed = sorted(names) + (["p1"] if dicom_dir else [])
    for name in listed:
        assert name in failures[0].reason
    assert "keep one of them" in failures[0].reason
    with pytest.raises(ValueError, match="read as case 'p1'"):
        find_input_cases(inp, 1)
