"""Exporting a model as a zip and installing it elsewhere: the installed copy predicts
exactly as the original work dir; an unsafe, altered or conflicting zip is refused and
leaves nothing behind."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from autojoint.api import Predictor
from autojoint.cli import export_model as cli_export
from autojoint.cli import install_model as cli_install
from autojoint.cli import predict as cli_predict
from autojoint.cli.common import EXIT_ERROR
from autojoint.io.calibration import Calibration, write_calibration
from autojoint.planning.schema import Plan
from autojoint.sharing.install import ModelInstallError, install_model, member_problem
from autojoint.sharing.package import MANIFEST_FILE, read_manifest
from tests.inference.tiny_workdir import make_tiny_workdir

FAST = ["--no-tta", "--step-size", "1"]


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny work dir (folds 0 and 1, one with a validation summary) and its model zip."""
    root = tmp_path_factory.mktemp("share")
    raw, work, _ = make_tiny_workdir(root, num_cases=3)
    summary = {
        "mean": {"lesion": {"dice": 0.5}, "ggo": {"dice": 0.25}},
        "classification": {"accuracy": 0.75},
        "diagnosis": {"macro_auc": 0.8},
        "metric_per_case": [{}, {}],
    }
    (work / "fold_0" / "validation").mkdir()
    (work / "fold_0" / "validation" / "summary.json").write_text(
        json.dumps(summary), encoding="utf-8"
    )
    # A calibration travels with the model: both copies then report the same calibrated
    # probabilities.
    classes = tuple(Plan.load(work / "plans.json").classes)
    calibration = Calibration(1.5, classes, ("0", "1"), 4, 1.0, 0.9, 0.2, 0.1, "2026-01-01")
    write_calibration(work, calibration)
    model = root / "model.zip"
    assert cli_export.main(["-w", str(work), "-o", str(model)]) == 0
    return {"root": root, "raw": raw, "work": work, "zip": model}


def _predict(work: Path, inputs: Path, out: Path) -> None:
    args = ["-i", str(inputs), "-o", str(out), "-w", str(work), *FAST, "--save-probabilities"]
    assert cli_predict.main(args) == 0


def test_zip_holds_the_model_its_card_and_manifest(exported: dict[str, Path]) -> None:
    with zipfile.ZipFile(exported["zip"]) as zf:
        names = set(zf.namelist())
        card = json.loads(zf.read("model_card.json"))
        manifest = json.loads(zf.read(MANIFEST_FILE))
        dataset = json.loads(zf.read("dataset.json"))
        text = zf.read("model_card.md").decode()
    assert {
        "fold_0/checkpoint_final.pt",
        "fold_1/checkpoint_final.pt",
        "fold_0/validation/summary.json",
        "plans.json",
        "fingerprint.json",
        "dataset.json",
        "calibration.json",
        "model_card.md",
        "model_card.json",
        MANIFEST_FILE,
    } == names
    assert set(manifest["files"]) == names - {MANIFEST_FILE}
    assert manifest["folds"] == ["0", "1"] and manifest["variant"] == "default"
    assert card["intended_use"] == "research use only, not a medical device"
    assert card["training_data"]["case_counts"]["num_cases"] == 3
    assert card["cross_validation"]["folds"]["1"] is None
    assert card["cross_validation"]["folds"]["0"]["accuracy"] == 0.75
    assert card["cross_validation"]["folds"]["0"]["num_cases"] == 2
    assert card["outputs"]["labels"] == dataset["labels"]
    assert "research use only" in text and "| 0 | 2 |" in text


def test_installed_model_predicts_exactly_as_the_original(exported: dict[str, Path]) -> None:
    root = exported["root"]
    installed = root / "installed"
    assert cli_install.main([str(exported["zip"]), "-w", str(installed)]) == 0
    assert read_manifest(installed) is not None
    inputs = root / "inputs"
    inputs.mkdir()
    shutil.copy(exported["raw"] / "imagesTr" / "case_000_0000.nii.gz", inputs)
    _predict(exported["work"], inputs, root / "pred_original")
    _predict(installed, inputs, root / "pred_installed")
    for name in ("case_000.nii.gz",):
        a = sitk.GetArrayFromImage(sitk.ReadImage(str(root / "pred_original" / name)))
        b = sitk.GetArrayFromImage(sitk.ReadImage(str(root / "pred_installed" / name)))
        np.testing.assert_array_equal(a, b)
    pa = np.load(root / "pred_original" / "case_000_probabilities.npz")
    pb = np.load(root / "pred_installed" / "case_000_probabilities.npz")
    assert sorted(pa.files) == sorted(pb.files)
    for key in pa.files:
        np.testing.assert_array_equal(pa[key], pb[key])
    da = json.loads((root / "pred_original" / "diagnoses.json").read_text(encoding="utf-8"))
    db = json.loads((root / "pred_installed" / "diagnoses.json").read_text(encoding="utf-8"))
    assert da == db
    ra = json.loads((root / "pred_original" / "case_000.json").read_text(encoding="utf-8"))
    rb = json.loads((root / "pred_installed" / "case_000.json").read_text(encoding="utf-8"))
    assert ra["calibrated_probabilities"] == rb["calibrated_probabilities"]
    assert rb["temperature"] == 1.5
    # Installing the same model again is a no-op, not a conflict.
    assert install_model(exported["zip"], installed).already_installed
    # The Python API reads the installed folder as a work dir.
    predictor = Predictor.from_work_dir(installed, device="cpu", use_tta=False, step_fraction=1)
    image = sitk.ReadImage(str(inputs / "case_000_0000.nii.gz"))
    result = predictor.predict(image, evidence=None, probabilities=False)
    np.testing.assert_array_equal(result.mask, a)
    # ... and calibrates as the command does, with the calibration.json that came along.
    assert result.calibrated_probabilities == pytest.approx(rb["calibrated_probabilities"])
    assert result.calibrated_probabilities != pytest.approx(result.class_probabilities)


def test_an_installed_variant_predicts_without_naming_it_in_python(
    exported: dict[str, Path], tmp_path: Path
) -> None:
    work = exported["work"]
    folder = work / "variants" / "narrow" / "fullres" / "fold_0"
    folder.mkdir(parents=True)
    shutil.copy(work / "fold_0" / "checkpoint_final.pt", folder)
    try:
        model = tmp_path / "narrow.zip"
        assert cli_export.main(["-w", str(work), "-o", str(model), "--variant", "narrow"]) == 0
    finally:
        shutil.rmtree(work / "variants")
    installed = tmp_path / "installed"
    manifest = install_model(model, installed).manifest
    assert manifest.variant == "narrow" and manifest.predict_flags == [
        "-c",
        "fullres",
        "--variant",
        "narrow",
    ]
    assert (installed / "variants" / "narrow" / "fullres" / "fold_0").is_dir()
    predictor = Predictor.from_work_dir(installed, device="cpu")
    assert predictor.ensemble.folds == ("0",)


def _rezip(source: Path, target: Path, change: dict[str, bytes | None]) -> Path:
    """``source`` with members replaced (or removed: None), the manifest left as it was."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for info in zin.infolist():
            if info.filename in change:
                data = change[info.filename]
                if data is not None:
                    zout.writestr(info.filename, data)
            else:
                zout.writestr(info, zin.read(info))
        for name, data in change.items():
            if name not in zin.namelist() and data is not None:
                zout.writestr(name, data)
    return target


def test_member_paths_that_leave_the_folder_are_refused(
    exported: dict[str, Path], tmp_path: Path
) -> None:
    for bad in ("../evil.txt", "/etc/evil.txt", "fold_0/../../evil.txt", "C:/evil.txt", "a\\b"):
        assert member_problem(zipfile.ZipInfo(bad)) is not None, bad
        zip_path = _rezip(exported["zip"], tmp_path / "bad.zip", {bad: b"x"})
        with pytest.raises(ModelInstallError, match="leaves|absolute"):
            install_model(zip_path, tmp_path / "target")
        assert not (tmp_path / "target").exists() and not (tmp_path.parent / "evil.txt").exists()
    link = zipfile.ZipInfo("fold_0/link.pt")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    assert member_problem(link) == "is a symbolic link"
    zip_path = tmp_path / "link.zip"
    shutil.copy(exported["zip"], zip_path)
    with zipfile.ZipFile(zip_path, "a") as zf:
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(ModelInstallError, match="symbolic link"):
        install_model(zip_path, tmp_path / "target")
    assert not (tmp_path / "target").exists()


def test_altered_or_unsafe_checkpoints_are_refused(
    exported: dict[str, Path], tmp_path: Path
) -> None:
    # A member whose bytes differ from the manifest's hash.
    zip_path = _rezip(exported["zip"], tmp_path / "altered.zip", {"plans.json": b"{}"})
    with pytest.raises(ModelInstallError, match="SHA-256"):
        install_model(zip_path, tmp_path / "target")
    # A checkpoint that needs code to load (a pickled object), with a matching manifest:
    # torch.load(weights_only=True) refuses it, and so does the install.
    buf = io.BytesIO()
    torch.save({"format_version": 1, "network": ModelInstallError("code")}, buf)
    unsafe = buf.getvalue()
    with zipfile.ZipFile(exported["zip"]) as zf:
        manifest = json.loads(zf.read(MANIFEST_FILE))
    manifest["files"]["fold_0/checkpoint_final.pt"] = hashlib.sha256(unsafe).hexdigest()
    zip_path = _rezip(
        exported["zip"],
        tmp_path / "unsafe.zip",
        {"fold_0/checkpoint_final.pt": unsafe, MANIFEST_FILE: json.dumps(manifest).encode()},
    )
    with pytest.raises(ModelInstallError, match="weights_only=True"):
        install_model(zip_path, tmp_path / "target")
    assert not (tmp_path / "target").exists()
    assert not list(tmp_path.glob(".target.install-*"))
    # The CLI says so in one line, exit code 1.
    code = cli_install.main([str(zip_path), "-w", str(tmp_path / "target")])
    assert code == EXIT_ERROR


def test_a_different_model_is_never_overwritten(exported: dict[str, Path], tmp_path: Path) -> None:
    # The original work dir's plans.json edited: a different model in the target.
    target = tmp_path / "target"
    target.mkdir()
    (target / "plans.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ModelInstallError, match="different model.*plans.json"):
        install_model(exported["zip"], target)
    assert (target / "plans.json").read_text(encoding="utf-8") == "{}"
    # An installed model of other folds: refused, naming it.
    other = tmp_path / "other.zip"
    assert cli_export.main(["-w", str(exported["work"]), "-o", str(other), "-f", "1"]) == 0
    second = tmp_path / "second"
    install_model(other, second)
    with pytest.raises(ModelInstallError, match="another installed model"):
        install_model(exported["zip"], second)
