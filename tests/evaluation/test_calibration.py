"""Temperature scaling, ECE and Brier score against known values; the calibration block
and reliability diagram of ``autojoint_evaluate``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose

from autojoint.evaluation.calibration import (
    apply_temperature,
    brier_score,
    expected_calibration_error,
    fit_temperature,
    log_probabilities,
    reliability_bins,
    softmax,
)
from autojoint.evaluation.evaluate import evaluate_folder, write_report
from autojoint.evaluation.plots import RELIABILITY_PNG
from tests.evaluation.helpers import LABELS, make_dataset

PROBS = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
LABELS_01 = np.array([0, 1, 1, 1])


def _overconfident(temperature: float, n: int = 20000) -> tuple[np.ndarray, np.ndarray]:
    """Logits ``temperature`` times too sharp for labels drawn from the true softmax."""
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0.0, 1.5, size=(n, 3))
    probs = softmax(true_logits)
    labels = np.array([rng.choice(3, p=p) for p in probs])
    return true_logits * temperature, labels


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_fit_recovers_a_known_temperature(temperature: float) -> None:
    logits, labels = _overconfident(temperature)
    assert fit_temperature(logits, labels) == pytest.approx(temperature, rel=0.05)


def test_log_probabilities_serve_as_logits() -> None:
    logits, labels = _overconfident(2.0)
    probs = softmax(logits)
    assert fit_temperature(log_probabilities(probs), labels) == pytest.approx(
        fit_temperature(logits, labels), rel=1e-3
    )
    calibrated = apply_temperature(probs, 2.0)
    assert_allclose(calibrated, softmax(logits / 2.0), atol=1e-3)  # log clips p at 1e-7
    assert np.array_equal(calibrated.argmax(axis=1), probs.argmax(axis=1))  # same decisions
    assert_allclose(apply_temperature(PROBS, 1.0), PROBS, atol=1e-6)


def test_ece_and_brier_by_hand() -> None:
    # Confidences 0.9 (right), 0.6 (wrong), 0.7 (right), 0.8 (right): one case per bin of
    # ten, gaps 0.1, 0.6, 0.3, 0.2 -> ECE 0.3.
    assert expected_calibration_error(PROBS, LABELS_01) == pytest.approx(0.3)
    # Two bins: all four in [0.5, 1], accuracy 0.75 = mean confidence 0.75 -> 0.
    assert expected_calibration_error(PROBS, LABELS_01, num_bins=2) == pytest.approx(0.0)
    # (0.01 + 0.01) + (0.36 + 0.36) + (0.09 + 0.09) + (0.04 + 0.04) = 1.0, over 4 cases.
    assert brier_score(PROBS, LABELS_01) == pytest.approx(0.25)
    bins = reliability_bins(PROBS, LABELS_01, num_bins=2)
    assert [b.num_cases for b in bins] == [0, 4]
    assert bins[1].accuracy == pytest.approx(0.75) and np.isnan(bins[0].accuracy)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="class indices"):
        fit_temperature(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="N > 0"):
        brier_score(np.zeros((0, 3)), np.zeros(0))
    with pytest.raises(ValueError, match="temperature"):
        apply_temperature(PROBS, 0.0)


def test_evaluate_reports_calibration_before_and_after(tmp_path: Path) -> None:
    pred_dir, ref_dir = make_dataset(tmp_path)
    ref_csv = tmp_path / "ref.csv"
    ref_csv.write_text(
        "case,diagnosis\ncase_a,covid\ncase_b,normal\ncase_c,covid\n", encoding="utf-8"
    )
    (pred_dir / "diagnoses.csv").write_text(
        "case,diagnosis,p_normal,p_covid,volume_ml_lesion,pcal_normal,pcal_covid\n"
        "case_a,covid,0.1,0.9,1.0,0.3,0.7\n"
        "case_b,normal,0.6,0.4,1.0,0.55,0.45\n"
        "case_c,normal,0.8,0.2,1.0,0.6,0.4\n",
        encoding="utf-8",
    )
    summary = evaluate_folder(pred_dir, ref_dir, label_values=LABELS, ref_diagnoses_csv=ref_csv)
    cal = summary["calibration"]
    labels = np.array([1, 0, 1])
    before = np.array([[0.1, 0.9], [0.6, 0.4], [0.8, 0.2]])
    after = np.array([[0.3, 0.7], [0.55, 0.45], [0.6, 0.4]])
    assert cal["num_bins"] == 10 and cal["num_cases"] == 3
    assert cal["uncalibrated"]["brier"] == pytest.approx(brier_score(before, labels))
    assert cal["calibrated"]["ece"] == pytest.approx(expected_calibration_error(after, labels))
    # gaps |accuracy - confidence| per case (each alone in its bin): 0.1, 0.4, 0.8 before;
    # 0.3, 0.45, 0.6 after
    assert cal["uncalibrated"]["ece"] == pytest.approx(1.3 / 3)
    assert cal["calibrated"]["ece"] == pytest.approx(1.35 / 3)
    names = write_report(summary, tmp_path / "out" / "summary.json")
    assert RELIABILITY_PNG in names
    png = (tmp_path / "out" / RELIABILITY_PNG).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))[
        "calibration"
    ]
