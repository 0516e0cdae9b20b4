"""Fit a trained model's temperature on its pooled cross-validation predictions and store it
beside its folds (``calibration.json``), for ``autojoint_calibrate`` and
``autojoint_find_best_configuration``.

The cases of all folds are pooled: each was predicted by the one fold that did not train
on it, so the pool is held-out data of the model's size, and one temperature (a single
parameter) is far from over-fitting even a few dozen cases. The predictor's fold ensemble
is somewhat less confident than any one fold, so the fitted T is, if anything, slightly
too large for it (docs/model_selection.md).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from autojoint.evaluation.calibration import (
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
    log_probabilities,
    negative_log_likelihood,
)
from autojoint.evaluation.cv_predictions import ALL_FOLDS, load_cv_predictions
from autojoint.io.calibration import Calibration, write_calibration

logger = logging.getLogger(__name__)


def calibration_from_probabilities(
    probs: np.ndarray, labels: np.ndarray, classes: Sequence[str], folds: Sequence[str]
) -> Calibration:
    """The temperature fitted on ``probs`` ``(N, C)`` against ``labels`` ``(N,)``, with the
    NLL and ECE before and after.

    Raises:
        ValueError: no cases, or mismatched shapes.
    """
    logits = log_probabilities(probs)
    temperature = fit_temperature(logits, labels)
    return Calibration(
        temperature=temperature,
        classes=tuple(classes),
        folds=tuple(folds),
        num_cases=int(len(labels)),
        nll_before=negative_log_likelihood(logits, labels, 1.0),
        nll_after=negative_log_likelihood(logits, labels, temperature),
        ece_before=expected_calibration_error(probs, labels),
        ece_after=expected_calibration_error(apply_temperature(probs, temperature), labels),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def calibrate_model(model_dir: Path, folds: Sequence[str] = ALL_FOLDS) -> Calibration:
    """Fit and write ``MODEL_DIR/calibration.json`` from the validation of ``folds``.

    Raises:
        FileNotFoundError: a fold has no final validation (all listed).
        ValueError: the model has no diagnosis classes, or no validation case has a
            reference diagnosis and probabilities.
    """
    cv = load_cv_predictions(model_dir, folds)
    if not cv.classes:
        raise ValueError(
            f"{model_dir}: the model has no diagnosis classes; there is nothing to calibrate."
        )
    _, probs, labels = cv.diagnosed()
    if len(labels) == 0:
        raise ValueError(
            f"{model_dir}: no validation case of folds {', '.join(folds)} has a reference "
            "diagnosis and probabilities; give the dataset's diagnoses (dataset_format.md) "
            "and retrain."
        )
    record = calibration_from_probabilities(probs, labels, cv.classes, folds)
    path = write_calibration(model_dir, record)
    logger.info(
        "temperature %.3f on %d cases: NLL %.4f -> %.4f, ECE %.4f -> %.4f -> %s",
        record.temperature,
        record.num_cases,
        record.nll_before,
        record.nll_after,
        record.ece_before,
        record.ece_after,
        path,
    )
    return record
