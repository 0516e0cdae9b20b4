"""The whole pipeline on the three real chest CTs of COVID-CT-MD (COVID-19, CAP, normal).

convert (autojoint_convert_covid_ct_md) -> plan (lungs cropped) -> preprocess -> a few
training iterations -> predict, all through the command-line main functions. A tiny
memory budget makes the planner add its low-resolution configuration, which keeps CPU
training and sliding-window prediction to seconds; predictions must still land on each
scan's original grid, and the fingerprint must hold real Hounsfield statistics.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from autojoint.cli import plan as cli_plan
from autojoint.cli import predict as cli_predict
from autojoint.cli import train as cli_train
from dataset_conversion.convert_covid_ct_md import main as convert_main
from tests.shared_data import shared_data_or_skip

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

CASES = ("P001", "cap001", "normal001")
CLASSES = ["COVID-19", "CAP", "Normal"]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    src = shared_data_or_skip("covid_ct_md")
    root = tmp_path_factory.mktemp("real_e2e")
    raw, work, out = root / "raw", root / "work", root / "pred"
    assert convert_main(["-i", str(src), "-o", str(raw)]) == 0
    # 12 MB: the smallest budget whose low-resolution classification view (6 x 12 x 12)
    # survives the classifier's three downsamplings (0.002 leaves 1 voxel, and instance
    # norm refuses it); lowres spacing is then about 25 x 16 x 16 mm.
    plan_args = ["-d", str(raw), "-w", str(work), "--gpu-memory-gb", "0.012"]
    assert cli_plan.main([*plan_args, "--lung-mask", "crop"]) == 0
    train = ["all", "-w", str(work), "-c", "lowres", "--epochs", "1", "--iterations-per-epoch", "2"]
    assert cli_train.main(train) == 0
    predict = ["-i", str(raw / "imagesTr"), "-o", str(out), "-w", str(work), "-c", "lowres"]
    assert cli_predict.main(predict) == 0
    return {"src": src, "raw": raw, "work": work, "out": out}


def test_fingerprint_holds_real_hu_and_plan_reports_counts(pipeline: dict[str, Path]) -> None:
    fp = json.loads((pipeline["work"] / "fingerprint.json").read_text(encoding="utf-8"))
    stats = fp["intensity"][0]
    assert stats["percentile_00_5"] < -800 < stats["median"] < 300 < stats["percentile_99_5"]
    assert -600 < stats["mean"] < 200  # lungs and soft tissue mixed
    assert fp["diagnosis_counts"] == {"COVID-19": 1, "CAP": 1, "Normal": 1}
    assert fp["num_cases_without_label"] == 3
    plan = json.loads((pipeline["work"] / "plans.json").read_text(encoding="utf-8"))
    assert plan["lung_mask"] == "crop" and plan["lowres"] is not None
    assert plan["case_counts"] == {
        "num_cases": 3,
        "num_with_label": 0,
        "num_with_diagnosis": 3,
        "num_with_both": 0,
    }


def test_lung_crop_is_inside_the_body_crop(pipeline: dict[str, Path]) -> None:
    fp = json.loads((pipeline["work"] / "fingerprint.json").read_text(encoding="utf-8"))
    body = {c["case_id"]: c["shape_after_crop"] for c in fp["cases"]}
    for case in CASES:
        props = json.loads(
            (pipeline["work"] / "preprocessed" / f"{case}.json").read_text(encoding="utf-8")
        )
        lung = [b - a for a, b in props["bbox"]]
        assert all(lo <= bo for lo, bo in zip(lung, body[case], strict=True))
        assert np.prod(lung) < 0.8 * np.prod(body[case])  # lungs + 10 mm < body
        assert np.prod(lung) > 0.15 * np.prod(props["geometry"]["shape"])  # both lungs kept


def test_predictions_sit_on_the_input_grid(pipeline: dict[str, Path]) -> None:
    for case in CASES:
        ref = sitk.ReadImage(str(pipeline["src"] / "nifti_ds2" / f"{case}.nii.gz"))
        pred = sitk.ReadImage(str(pipeline["out"] / f"{case}.nii.gz"))
        assert pred.GetSize() == ref.GetSize()
        np.testing.assert_allclose(pred.GetSpacing(), ref.GetSpacing(), rtol=1e-6)
        np.testing.assert_allclose(pred.GetOrigin(), ref.GetOrigin(), atol=1e-4)
        np.testing.assert_allclose(pred.GetDirection(), ref.GetDirection(), atol=1e-6)
        assert set(np.unique(sitk.GetArrayFromImage(pred)).tolist()) <= {0, 1}
    with open(pipeline["out"] / "diagnoses.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["case"] for r in rows) == sorted(CASES)
    for r in rows:
        probs = np.array([float(r[f"p_{c}"]) for c in CLASSES])
        np.testing.assert_allclose(probs.sum(), 1.0, atol=1e-4)
        assert r["diagnosis"] == CLASSES[int(np.argmax(probs))]
