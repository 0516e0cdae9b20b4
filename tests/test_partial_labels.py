"""Partial labels end to end: some cases only have a diagnosis, some only a mask.

Plan -> train -> predict -> evaluate through the CLIs' main functions; the fingerprint and
the plan report the counts, the loss masks the missing task per case, evaluation scores
each task on the cases that have its reference.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from autojoint.cli import evaluate as cli_evaluate
from autojoint.cli import plan as cli_plan
from autojoint.cli import predict as cli_predict
from autojoint.cli import train as cli_train
from autojoint.data.loader import JointDataLoader
from autojoint.io.workdir import preprocessed_dir
from autojoint.losses.joint import diagnosis_loss
from tests.synthetic import make_raw_dataset

DIAGNOSIS_ONLY = ("case_000", "case_003")  # mask file removed
MASK_ONLY = ("case_001", "case_004")  # diagnosis left empty


def make_partial(root: Path) -> Path:
    raw = make_raw_dataset(root, num_cases=6)
    for case in DIAGNOSIS_ONLY:
        (raw / "labelsTr" / f"{case}.nii.gz").unlink()
    path = raw / "diagnosesTr.csv"
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    with open(path, "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows([r if r[0] not in MASK_ONLY else [r[0], ""] for r in rows])
    return raw


@pytest.fixture(scope="module")
def partial(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("partial")
    raw = make_partial(root / "raw")
    work = root / "work"
    assert cli_plan.main(["-d", str(raw), "-w", str(work)]) == 0
    return {"root": root, "raw": raw, "work": work}


def test_fingerprint_and_plan_report_the_counts(partial: dict[str, Path]) -> None:
    fp = json.loads((partial["work"] / "fingerprint.json").read_text(encoding="utf-8"))
    assert fp["num_cases_without_label"] == 2
    assert fp["num_cases_without_diagnosis"] == 2
    plan = json.loads((partial["work"] / "plans.json").read_text(encoding="utf-8"))
    assert plan["case_counts"] == {
        "num_cases": 6,
        "num_with_label": 4,
        "num_with_diagnosis": 4,
        "num_with_both": 2,
    }


def test_loader_flags_the_missing_task_per_case(partial: dict[str, Path]) -> None:
    plan = json.loads((partial["work"] / "plans.json").read_text(encoding="utf-8"))
    ids = [f"case_{i:03d}" for i in range(6)]
    loader = JointDataLoader(
        preprocessed_dir(partial["work"], "fullres"),
        ids,
        patch_size=plan["patch_size"],
        batch_size=6,
        classes=plan["classes"],
        seed=0,
        oversample_foreground=0.0,
    )
    batch = next(loader)
    for key, has_mask, diagnosis in zip(
        batch["keys"], batch["has_mask"], batch["diagnosis"], strict=True
    ):
        assert bool(has_mask) == (key not in DIAGNOSIS_ONLY)
        assert (int(diagnosis) == -1) == (key in MASK_ONLY)


@pytest.mark.slow
def test_partial_dataset_trains_predicts_and_evaluates(partial: dict[str, Path]) -> None:
    work, raw, root = partial["work"], partial["raw"], partial["root"]
    args = ["0", "-w", str(work), "--epochs", "1", "--iterations-per-epoch", "2"]
    assert cli_train.main(args) == 0
    log = json.loads((work / "fold_0" / "training_log.json").read_text(encoding="utf-8"))
    assert np.isfinite(log["epochs"][0]["loss_total"])
    summary = json.loads(
        (work / "fold_0" / "validation" / "summary.json").read_text(encoding="utf-8")
    )
    for entry in summary["per_case"]:  # each task scored only where its reference exists
        assert ("segmentation" in entry) == (entry["case"] not in DIAGNOSIS_ONLY)
        assert ("diagnosis_ref" in entry) == (entry["case"] not in MASK_ONLY)
    out = root / "pred"
    assert cli_predict.main(["-i", str(raw / "imagesTr"), "-o", str(out), "-w", str(work)]) == 0
    summary_path = root / "summary.json"
    evaluate = ["-p", str(out), "-r", str(raw / "labelsTr"), "-o", str(summary_path)]
    assert cli_evaluate.main([*evaluate, "--diagnoses", str(raw / "diagnosesTr.csv")]) == 0
    result = json.loads(summary_path.read_text(encoding="utf-8"))
    assert result["num_cases"] == 4  # the masked cases
    assert {e["case"] for e in result["per_case"]} == {f"case_{i:03d}" for i in range(6)} - set(
        DIAGNOSIS_ONLY
    )
    # diagnoses scored on every case with a reference diagnosis, masked or not
    assert result["classification"]["num_cases"] == 4
    by_case = {e["case"]: e for e in result["per_case"]}
    assert by_case["case_001"]["diagnosis_ref"] is None  # mask-only: no diagnosis scored
    assert by_case["case_002"]["diagnosis_ref"] == "normal"


def test_masked_losses_ignore_the_missing_task() -> None:
    """A batch whose cases lack the mask (or diagnosis) gives zero (not NaN) for that loss,
    and the other task's gradient is unchanged by what the missing labels would say."""
    logits = torch.randn(3, 3, requires_grad=True)
    weights = torch.ones(3)
    none = diagnosis_loss(logits, torch.tensor([-1, -1, -1]), weights)
    assert float(none.detach()) == 0.0
    none.backward()
    assert logits.grad is not None and float(logits.grad.abs().sum()) == 0.0
    one = diagnosis_loss(logits, torch.tensor([-1, 2, -1]), weights)
    torch.testing.assert_close(
        one, torch.nn.functional.cross_entropy(logits[1:2], torch.tensor([2]))
    )
