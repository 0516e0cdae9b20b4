"""2D data through the command-line entry points: plan -> train -> predict -> evaluate, on
tiny synthetic 2D slices; the predicted masks are 2D images on the input grid."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from autojoint.cli import evaluate as cli_evaluate
from autojoint.cli import plan as cli_plan
from autojoint.cli import predict as cli_predict
from autojoint.cli import train as cli_train
from autojoint.planning.schema import Plan
from tests.synthetic import CLASSES, make_raw_dataset, make_raw_dataset_2d


@pytest.fixture(scope="module")
def trained_2d(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("e2e_2d")
    raw = make_raw_dataset_2d(root / "raw", num_cases=6)
    work = root / "work"
    assert cli_plan.main(["-d", str(raw), "-w", str(work)]) == 0
    # no -c: a plan of 2D images trains its only configuration, 2d
    args = ["0", "-w", str(work), "--epochs", "1", "--iterations-per-epoch", "2"]
    assert cli_train.main(args) == 0
    assert (work / "2d" / "fold_0" / "checkpoint_final.pt").is_file()
    return {"root": root, "raw": raw, "work": work}


@pytest.mark.slow
def test_plan_of_2d_slices_is_2d(trained_2d: dict[str, Path]) -> None:
    work = trained_2d["work"]
    fp = json.loads((work / "fingerprint.json").read_text(encoding="utf-8"))
    assert fp["is_2d"] and all(c["is_2d"] and c["shape"][0] == 1 for c in fp["cases"])
    plan = Plan.load(work / "plans.json")
    assert plan.configuration == "2d" and plan.patch_size[0] == 1
    assert plan.classification_shape[0] == 1
    assert all(k[0] == 1 for k in plan.topology.kernel_sizes)
    assert all(s[0] == 1 for s in plan.topology.strides)
    assert len(list((work / "preprocessed_2d").glob("*.json"))) == 6
    assert not (work / "preprocessed").exists()


@pytest.mark.slow
def test_fullres_of_a_2d_plan_names_the_fix(
    trained_2d: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    work = trained_2d["work"]
    assert cli_train.main(["0", "-w", str(work), "-c", "fullres", "--epochs", "1"]) != 0
    assert "only configuration is 2d. Pass -c 2d" in capsys.readouterr().err


@pytest.mark.slow
def test_predict_writes_2d_masks_on_the_input_grid(trained_2d: dict[str, Path]) -> None:
    raw, work, root = trained_2d["raw"], trained_2d["work"], trained_2d["root"]
    out = root / "pred"
    args = ["-i", str(raw / "imagesTr"), "-o", str(out), "-w", str(work)]  # -c: the plan's
    assert cli_predict.main([*args, "--evidence"]) == 0
    for image in sorted((raw / "imagesTr").glob("*_0000.nii.gz")):
        case = image.name.removesuffix("_0000.nii.gz")
        ref = sitk.ReadImage(str(image))
        for name in (f"{case}.nii.gz", f"{case}_evidence.nii.gz"):
            pred = sitk.ReadImage(str(out / name))
            assert pred.GetDimension() == 2
            assert pred.GetSize() == ref.GetSize()
            np.testing.assert_allclose(pred.GetSpacing(), ref.GetSpacing())
            np.testing.assert_allclose(pred.GetOrigin(), ref.GetOrigin())
            np.testing.assert_allclose(pred.GetDirection(), ref.GetDirection())
        mask = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{case}.nii.gz")))
        assert set(np.unique(mask)) <= {0, 1, 2}
    rows = (out / "diagnoses.csv").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 7 and all(r.split(",")[1] in CLASSES for r in rows[1:])
    # The evaluator reads the 2D masks against the 2D references.
    assert (
        cli_evaluate.main(
            ["-p", str(out), "-r", str(raw / "labelsTr"), "-o", str(root / "eval.json")]
        )
        == 0
    )


@pytest.mark.slow
def test_2d_configuration_of_a_3d_dataset(tmp_path: Path) -> None:
    # nnU-Net's 2d on volumes: plan -c 2d preprocesses slices, train/predict -c 2d, and the
    # masks come back as 3D volumes on each input grid.
    raw = make_raw_dataset(tmp_path / "raw", num_cases=4, shape=(6, 32, 32))
    work = tmp_path / "work"
    assert cli_plan.main(["-d", str(raw), "-w", str(work), "-c", "2d"]) == 0
    plan = Plan.load(work / "plans.json")
    assert plan.configuration == "fullres" and plan.two_d is not None
    assert plan.two_d.patch_size[0] == 1
    assert not (work / "preprocessed").exists()
    assert len(list((work / "preprocessed_2d").glob("*.json"))) == 4
    train = ["all", "-w", str(work), "-c", "2d", "--epochs", "1", "--iterations-per-epoch", "1"]
    assert cli_train.main(train) == 0
    assert (work / "2d" / "fold_all" / "checkpoint_final.pt").is_file()
    out = tmp_path / "pred"
    args = ["-i", str(raw / "imagesTr"), "-o", str(out), "-w", str(work), "-c", "2d"]
    assert cli_predict.main(args) == 0
    for image in sorted((raw / "imagesTr").glob("*_0000.nii.gz")):
        ref = sitk.ReadImage(str(image))
        pred = sitk.ReadImage(str(out / image.name.replace("_0000", "")))
        assert pred.GetDimension() == 3 and pred.GetSize() == ref.GetSize()
        np.testing.assert_allclose(pred.GetSpacing(), ref.GetSpacing())
        np.testing.assert_allclose(pred.GetDirection(), ref.GetDirection())
