"""Every stage through the command-line entry points on tiny synthetic data."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from autojoint.cli import evaluate as cli_evaluate
from autojoint.cli import plan as cli_plan
from autojoint.cli import predict as cli_predict
from autojoint.cli import train as cli_train
from autojoint.planning.presets import preset_overrides
from autojoint.planning.variants import variant_name
from tests.synthetic import CLASSES, make_raw_dataset


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("e2e")
    raw = make_raw_dataset(root / "raw", num_cases=6)
    work = root / "work"
    assert cli_plan.main(["-d", str(raw), "-w", str(work), "-j", "2"]) == 0
    assert (
        cli_train.main(["0", "-w", str(work), "--epochs", "1", "--iterations-per-epoch", "2"]) == 0
    )
    return {"root": root, "raw": raw, "work": work}


@pytest.mark.slow
def test_plan_writes_versioned_files(trained: dict[str, Path]) -> None:
    work = trained["work"]
    plan = json.loads((work / "plans.json").read_text(encoding="utf-8"))
    fp = json.loads((work / "fingerprint.json").read_text(encoding="utf-8"))
    assert plan["schema_version"] == 1 and fp["schema_version"] == 1
    assert plan["classes"] == CLASSES
    assert len(list((work / "preprocessed").glob("*.json"))) == 6
    stride = np.prod(np.array(plan["topology"]["strides"]), axis=0)
    assert np.all(np.array(plan["patch_size"]) % stride == 0)


@pytest.mark.slow
def test_explain_prints_every_number_with_its_reason(
    trained: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    assert cli_plan.main(["-w", str(trained["work"]), "--explain"]) == 0
    out = capsys.readouterr().out
    plan = json.loads((trained["work"] / "plans.json").read_text(encoding="utf-8"))
    patch = " x ".join(str(v) for v in plan["patch_size"])
    assert "patch size" in out and patch in out
    assert out.count("why:") >= 8
    assert set(plan["reasons"]) >= {"target_spacing", "patch_size", "batch_size", "eta"}


@pytest.mark.slow
def test_train_writes_checkpoints_and_log(trained: dict[str, Path]) -> None:
    fold = trained["work"] / "fold_0"
    assert (fold / "checkpoint_final.pt").is_file()
    assert (fold / "checkpoint_latest.pt").is_file()
    log = json.loads((fold / "training_log.json").read_text(encoding="utf-8"))
    assert len(log["epochs"]) == 1
    assert set(log["train_cases"]).isdisjoint(log["val_cases"])
    assert np.isfinite(log["epochs"][0]["loss_total"])
    # Full-case validation of the held-out fold, in preprocessed space.
    summary = json.loads((fold / "validation" / "summary.json").read_text(encoding="utf-8"))
    assert summary["num_cases"] == len(log["val_cases"]) > 0
    assert {e["case"] for e in summary["per_case"]} == set(log["val_cases"])
    assert set(summary["mean"]) == {"ground_glass", "consolidation", "lesion"}
    assert 0.0 <= summary["classification"]["accuracy"] <= 1.0


@pytest.mark.slow
def test_predict_and_evaluate(trained: dict[str, Path]) -> None:
    raw, work, root = trained["raw"], trained["work"], trained["root"]
    out = root / "pred"
    assert (
        cli_predict.main(
            ["-i", str(raw / "imagesTr"), "-o", str(out), "-w", str(work), "-f", "0", "--no-tta"]
        )
        == 0
    )
    for img_path in sorted((raw / "imagesTr").glob("*_0000.nii.gz")):
        case = img_path.name.removesuffix("_0000.nii.gz")
        ref, pred = sitk.ReadImage(str(img_path)), sitk.ReadImage(str(out / f"{case}.nii.gz"))
        # The mask must sit on exactly the input grid.
        assert pred.GetSize() == ref.GetSize()
        np.testing.assert_allclose(pred.GetSpacing(), ref.GetSpacing(), rtol=1e-6)
        np.testing.assert_allclose(pred.GetOrigin(), ref.GetOrigin(), atol=1e-6)
        np.testing.assert_allclose(pred.GetDirection(), ref.GetDirection(), atol=1e-6)
        assert set(np.unique(sitk.GetArrayFromImage(pred))) <= {0, 1, 2}
    with open(out / "diagnoses.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    columns = ["case", "diagnosis"] + [f"p_{c}" for c in CLASSES]
    assert list(rows[0])[: len(columns)] == columns  # later columns: volumes (docs/prediction.md)
    assert len(rows) == 6
    for r in rows:
        probs = np.array([float(r[f"p_{c}"]) for c in CLASSES])
        np.testing.assert_allclose(probs.sum(), 1.0, atol=1e-4)
        assert r["diagnosis"] == CLASSES[int(np.argmax(probs))]
    summary_path = root / "summary.json"
    assert (
        cli_evaluate.main(
            [
                "-p",
                str(out),
                "-r",
                str(raw / "labelsTr"),
                "--diagnoses",
                str(raw / "diagnosesTr.csv"),
                "-o",
                str(summary_path),
            ]
        )
        == 0
    )
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    assert summary["num_cases"] == 6
    assert 0.0 <= summary["classification"]["accuracy"] <= 1.0
    assert "lesion" in summary["mean"]


@pytest.mark.slow
def test_segmentation_only_dataset(tmp_path: Path) -> None:
    """A plain nnU-Net v2 dataset (no classes, no diagnoses CSV) plans, trains, predicts."""
    raw = make_raw_dataset(tmp_path / "raw", num_cases=5, with_diagnoses=False)
    work = tmp_path / "work"
    assert cli_plan.main(["-d", str(raw), "-w", str(work)]) == 0
    assert (
        cli_train.main(["all", "-w", str(work), "--epochs", "1", "--iterations-per-epoch", "1"])
        == 0
    )
    out = tmp_path / "pred"
    args = ["-i", str(raw / "imagesTr"), "-o", str(out), "-w", str(work), "--no-tta"]
    assert cli_predict.main(args) == 0
    assert len(list(out.glob("*.nii.gz"))) == 5
    assert not (out / "diagnoses.csv").exists()


def test_bad_input_gives_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    raw = make_raw_dataset(tmp_path / "raw", num_cases=3)
    (raw / "imagesTr" / "case_001_0000.nii.gz").write_bytes(b"not an image")
    assert cli_plan.main(["-d", str(raw), "-w", str(tmp_path / "work")]) == 3  # dataset
    err = capsys.readouterr().err
    assert "case_001_0000.nii.gz" in err and "corrupt" in err


def test_missing_work_dir_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli_train.main(["0", "-w", str(tmp_path / "nothing")]) == 1
    assert "plans.json" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command", ["autojoint_plan", "autojoint_train", "autojoint_predict", "autojoint_evaluate"]
)
def test_console_scripts_installed_with_help(command: str) -> None:
    exe = shutil.which(command, path=str(Path(sys.executable).parent))
    assert exe is not None, f"{command} not installed; run scripts/setup_env.sh"
    result = subprocess.run(
        [exe, "--help"], capture_output=True, text=True, encoding="utf-8", check=True
    )
    assert result.stdout.startswith(f"usage: {command}")
    assert "--help" in result.stdout


@pytest.mark.slow
def test_lowres_configuration_end_to_end(tmp_path: Path) -> None:
    """A tiny memory budget makes the full-resolution patch cover < 1/4 of the scan: the
    plan gains a low-resolution configuration that preprocesses, trains and predicts."""
    raw = make_raw_dataset(tmp_path / "raw", num_cases=5, shape=(16, 64, 64))
    work = tmp_path / "work"
    assert cli_plan.main(["-d", str(raw), "-w", str(work), "--gpu-memory-gb", "0.002"]) == 0
    plan = json.loads((work / "plans.json").read_text(encoding="utf-8"))
    assert plan["lowres"] is not None
    low, full = plan["lowres"], plan
    assert all(a >= b for a, b in zip(low["target_spacing"], full["target_spacing"], strict=True))
    assert np.prod(low["patch_size"]) / np.prod(low["median_shape"]) >= 0.25
    assert len(list((work / "preprocessed_lowres").glob("*.json"))) == 5
    args = ["all", "-w", str(work), "-c", "lowres", "--epochs", "1", "--iterations-per-epoch", "1"]
    assert cli_train.main(args) == 0
    assert (work / "lowres" / "fold_all" / "checkpoint_final.pt").is_file()
    out = tmp_path / "pred"
    predict = ["-i", str(raw / "imagesTr"), "-o", str(out), "-w", str(work), "-c", "lowres"]
    predict.append("--no-tta")  # mirroring TTA (8 passes per tile) is tested in tests/inference
    assert cli_predict.main(predict) == 0
    ref = sitk.ReadImage(str(raw / "imagesTr" / "case_000_0000.nii.gz"))
    assert sitk.ReadImage(str(out / "case_000.nii.gz")).GetSize() == ref.GetSize()
    # The full-resolution configuration was not trained: predicting with it says so.
    assert cli_predict.main(["-i", str(raw / "imagesTr"), "-o", str(out), "-w", str(work)]) == 1


@pytest.mark.slow
def test_unknown_loss_fails_before_training(
    trained: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    args = ["0", "-w", str(trained["work"]), "--set", "loss.segmentation=nope"]
    assert cli_train.main(args) == 1
    assert "available: dice_ce, dice_focal, focal, focal_tversky" in capsys.readouterr().err


@pytest.mark.slow
def test_all_switches_train_and_predict(trained: dict[str, Path]) -> None:
    """Every network switch (the MSD-Net preset's blocks plus every other switch) and a
    non-default loss on: the checkpoint keeps the switched plan, and prediction rebuilds
    that network."""
    work, raw, root = trained["work"], trained["raw"], trained["root"]
    switches = [
        "network.reverse_attention=true",
        "network.cross_stitch=true",
        "network.classifier_input=multiply",
        "network.refinement_passes=1",
        "loss.segmentation=focal_tversky",
    ]
    args = ["1", "-w", str(work), "--epochs", "1", "--iterations-per-epoch", "1"]
    args += ["--preset", "msd-net", *(a for s in switches for a in ("--set", s))]
    assert cli_train.main(args) == 0
    # A variant of its own (docs/training.md "Variants"), never trained into fold_0's folder.
    name = variant_name((*preset_overrides("msd-net"), *switches))
    assert (work / "variants" / name / "fullres" / "fold_1" / "checkpoint_final.pt").is_file()
    assert not (work / "fold_1").exists()
    assert cli_train.main([*args, "--variant", "default"]) == 1
    out = root / "pred_switches"
    predict = ["-i", str(raw / "imagesTr"), "-o", str(out), "--no-tta"]
    assert cli_predict.main([*predict, "-w", str(work), "-f", "1", "--variant", name]) == 0
    with open(out / "diagnoses.csv", encoding="utf-8", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 6
    # Folds trained with different switches, put side by side by hand, are not ensembled
    # silently.
    mixed = root / "mixed_work"
    mixed.mkdir()
    shutil.copy(work / "plans.json", mixed)
    shutil.copytree(work / "fold_0", mixed / "fold_0")
    shutil.copytree(work / "variants" / name / "fullres" / "fold_1", mixed / "fold_1")
    assert cli_predict.main([*predict, "-w", str(mixed), "-f", "0", "1"]) == 1


@pytest.mark.slow
def test_evidence_maps_on_input_grid(trained: dict[str, Path]) -> None:
    raw, work, root = trained["raw"], trained["work"], trained["root"]
    out = root / "pred_evidence"
    args = ["-i", str(raw / "imagesTr"), "-o", str(out), "-w", str(work), "-f", "0", "--no-tta"]
    assert cli_predict.main([*args, "--evidence"]) == 0
    for img_path in sorted((raw / "imagesTr").glob("*_0000.nii.gz")):
        case = img_path.name.removesuffix("_0000.nii.gz")
        ref = sitk.ReadImage(str(img_path))
        ev_img = sitk.ReadImage(str(out / f"{case}_evidence.nii.gz"))
        assert ev_img.GetSize() == ref.GetSize()
        np.testing.assert_allclose(ev_img.GetDirection(), ref.GetDirection(), atol=1e-6)
        ev = sitk.GetArrayFromImage(ev_img)
        assert ev.dtype == np.float32 and ev.min() >= 0.0 and ev.max() <= 1.0
        air = sitk.GetArrayFromImage(ref) < -900
        # Outside the body crop the map is exactly 0 (the corners of these scans are air).
        assert ev[0, 0, 0] == 0.0 and air[0, 0, 0]
