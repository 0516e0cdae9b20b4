"""The trainer's full-case validation scores with the evaluation module's implementation."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from autojoint.cli import train as cli_train
from autojoint.evaluation.cv_predictions import (
    load_cv_predictions,
    read_segmentation_probabilities,
    validation_probabilities_path,
)
from autojoint.evaluation.metrics import roc_auc_one_vs_rest, segmentation_scores
from autojoint.inference import engine
from autojoint.networks.joint_net import JointNet
from autojoint.pipeline import plan_and_preprocess
from autojoint.preprocessing.preprocess import list_preprocessed, load_preprocessed
from autojoint.training import validation
from autojoint.training.config import TrainerConfig
from tests.helpers import seeded_net
from tests.synthetic import make_raw_dataset


def _fake_probabilities(net: object, data: np.ndarray, *_args: object, **_kwargs: object):
    """A deterministic stand-in segmentation: label 1 where the image is bright-ish."""
    fg = (data[0] > np.quantile(data[0], 0.9)).astype(np.float32)
    return np.stack([1 - fg, fg, np.zeros_like(fg)])


def test_validation_reports_surface_metrics_and_auc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = make_raw_dataset(tmp_path / "raw", num_cases=4)
    work = tmp_path / "work"
    plan = plan_and_preprocess(raw, work)
    pre_dir = work / "preprocessed"
    case_ids = list_preprocessed(pre_dir)
    net = seeded_net(plan)
    monkeypatch.setattr(engine, "network_probabilities", _fake_probabilities)

    summary = validation.validate_cases(net, plan, pre_dir, case_ids, torch.device("cpu"))
    labels = {k: v for k, v in plan.labels.items() if v > 0}
    assert summary["num_cases"] == len(case_ids) == len(summary["metric_per_case"])
    assert summary["tolerance_mm"] == 1.0
    for entry in summary["metric_per_case"]:
        case = load_preprocessed(pre_dir, entry["case"])
        pred = np.argmax(_fake_probabilities(None, case.data), axis=0)
        want = segmentation_scores(
            pred, case.seg, labels, spacing=plan.target_spacing, tolerance_mm=1.0
        )
        np.testing.assert_equal(entry["metrics"], want)
        assert entry["spacing"] == list(plan.target_spacing)
        probs = entry["probabilities"]
        assert list(probs) == list(plan.classes)
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-6)
        assert entry["diagnosis_pred"] == max(probs, key=probs.get)
    assert set(summary["mean"]) == {*labels, "lesion"}
    assert math.isfinite(summary["mean"]["lesion"]["nsd"])
    dx = summary["diagnosis"]
    entries = summary["metric_per_case"]
    want_auc = roc_auc_one_vs_rest(
        [e["diagnosis_ref"] for e in entries],
        np.array([[e["probabilities"][c] for c in plan.classes] for e in entries]),
        plan.classes,
    )
    np.testing.assert_equal(dx["auc"], want_auc)
    assert dx["macro_auc"] == want_auc["macro"]

    fold = work / "fold_0"
    path = validation.write_validation(summary, fold)
    assert path == fold / "validation" / "summary.json"
    loaded = json.loads(path.read_text(encoding="utf-8"))
    assert {e["case"] for e in loaded["per_case"]} == set(case_ids)  # first-release keys
    assert 0.0 <= loaded["classification"]["accuracy"] <= 1.0
    assert "nsd" in loaded["mean"]["lesion"] and "macro_auc" in loaded["diagnosis"]
    for name in loaded["figures"]:
        assert (fold / "validation" / name).is_file()
    assert "dice_nsd_boxplot.png" in loaded["figures"]


def test_validation_mirrors_as_the_predictor_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The final validation runs the predictor's engine: by default with mirroring over
    the trainer's default axes (what autojoint_predict mirrors), ``()`` without; the trainer
    passes its augmentation's axes, or ``()`` with ``--no-validation-tta``."""
    raw = make_raw_dataset(tmp_path / "raw", num_cases=4)
    work = tmp_path / "work"
    plan = plan_and_preprocess(raw, work)
    pre_dir = work / "preprocessed"
    case_ids = list_preprocessed(pre_dir)[:2]
    net = JointNet(plan)
    calls: list[tuple[tuple[int, ...], int]] = []

    def spy(net: object, data: np.ndarray, *args: object, **kwargs: Any) -> np.ndarray:
        calls.append((tuple(kwargs["mirror_axes"]), kwargs["tile_batch"]))
        return _fake_probabilities(net, data)

    monkeypatch.setattr(engine, "network_probabilities", spy)
    validation.validate_cases(net, plan, pre_dir, case_ids, torch.device("cpu"))
    assert calls == [((0, 1, 2), plan.batch_size)] * 2
    calls.clear()
    validation.validate_cases(net, plan, pre_dir, case_ids, torch.device("cpu"), mirror_axes=())
    assert calls == [((), plan.batch_size)] * 2


def test_no_validation_tta_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    configs: list[TrainerConfig] = []

    def record(work_dir: Path, fold: str, config: TrainerConfig, ctx: object) -> Path:
        configs.append(config)
        return work_dir

    monkeypatch.setattr(cli_train, "train_fold", record)
    assert cli_train.main(["0", "-w", str(tmp_path)]) == 0
    assert cli_train.main(["0", "-w", str(tmp_path), "--no-validation-tta"]) == 0
    assert [c.use_validation_tta for c in configs] == [True, False]


def test_validation_keeps_probabilities_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``probabilities_to`` writes each case's softmax (preprocessed grid, float16) and
    diagnosis probabilities; the cross-validation reader finds them beside summary.json."""
    raw = make_raw_dataset(tmp_path / "raw", num_cases=3)
    work = tmp_path / "work"
    plan = plan_and_preprocess(raw, work)
    pre_dir = work / "preprocessed"
    case_ids = list_preprocessed(pre_dir)
    monkeypatch.setattr(engine, "network_probabilities", _fake_probabilities)
    fold = work / "fold_0"
    net = seeded_net(plan)
    summary = validation.validate_cases(
        net, plan, pre_dir, case_ids, torch.device("cpu"), mirror_axes=(), probabilities_to=fold
    )
    validation.write_validation(summary, fold)
    for case_id in case_ids:
        path = validation_probabilities_path(fold, case_id)
        want = _fake_probabilities(None, load_preprocessed(pre_dir, case_id).data)
        np.testing.assert_allclose(read_segmentation_probabilities(path), want, atol=1e-3)
        with np.load(path) as npz:
            assert list(npz["labels"]) == list(plan.labels)
            assert list(npz["classes"]) == list(plan.classes)
            assert npz["diagnosis_probabilities"].sum() == pytest.approx(1.0, abs=1e-5)
    cv = load_cv_predictions(work, ["0"])
    assert cv.has_segmentation_files and cv.classes == tuple(plan.classes)
    cases, probs, labels = cv.diagnosed()
    assert len(cases) == len(case_ids) and probs.shape == (len(case_ids), len(plan.classes))
    assert [plan.classes[i] for i in labels] == [c.diagnosis_ref for c in cases]


def test_save_validation_probabilities_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configs: list[TrainerConfig] = []

    def record(work_dir: Path, fold: str, config: TrainerConfig, ctx: object) -> Path:
        configs.append(config)
        return work_dir

    monkeypatch.setattr(cli_train, "train_fold", record)
    assert cli_train.main(["0", "-w", str(tmp_path)]) == 0
    assert cli_train.main(["0", "-w", str(tmp_path), "--save-validation-probabilities"]) == 0
    assert [c.save_validation_probabilities for c in configs] == [False, True]
