"""What a chosen model adds after the networks (``best_configuration.json``,
``calibration.json``): the diagnosis gate (an empty mask for a case called a lesion-free
class), removal of small lesion components, and temperature-scaled diagnosis
probabilities. All are chosen on cross-validation predictions
(``evaluation.model_selection``, ``evaluation.model_calibration``); here they are applied
to one predicted case."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from autojoint.evaluation.calibration import apply_temperature
from autojoint.evaluation.diagnosis_gate import apply_diagnosis_gate
from autojoint.evaluation.postprocessing import apply_postprocessing
from autojoint.inference.folder_tables import CALIBRATED as CALIBRATED_KEY
from autojoint.inference.outputs import CasePrediction


def gate_prediction(
    result: CasePrediction, gated: Sequence[str], classes: Sequence[str]
) -> CasePrediction:
    """``result`` with an empty mask when its diagnosis (the argmax of its diagnosis
    probabilities over ``classes``) is one of ``gated``; the probabilities stay the
    networks' own, and ``mask_emptied_by_diagnosis`` records the class."""
    if not gated or result.diagnosis_probs is None:
        return result
    diagnosis = classes[int(np.argmax(result.diagnosis_probs))]
    if diagnosis not in gated:
        return result
    mask = apply_diagnosis_gate(result.mask, diagnosis, gated)
    return dataclasses.replace(result, mask=mask, mask_emptied_by_diagnosis=diagnosis)


def postprocess_prediction(
    result: CasePrediction, rules: Sequence[tuple[int, float]]
) -> CasePrediction:
    """``result`` with each ``(label value, min volume mm³)`` rule applied to its mask, on
    the input grid's own voxel volume."""
    if not rules:
        return result
    voxel_mm3 = float(math.prod(result.geometry.spacing))
    mask = apply_postprocessing(result.mask, dict(rules), voxel_mm3)
    return dataclasses.replace(result, mask=mask)


def add_calibrated_probabilities(
    record: dict[str, Any], temperature: float | None, classes: Sequence[str]
) -> dict[str, Any]:
    """Add ``calibrated_probabilities`` (``{class: p}``, ``softmax(log p / T)``) and the
    ``temperature`` to a case record that has ``probabilities``; ``probabilities`` and
    ``diagnosis`` stay as they are (temperature scaling never changes the argmax)."""
    if temperature is None or "probabilities" not in record:
        return record
    probs = np.array([record["probabilities"][c] for c in classes])
    calibrated = apply_temperature(probs, temperature)
    record[CALIBRATED_KEY] = {c: float(p) for c, p in zip(classes, calibrated, strict=True)}
    record["temperature"] = float(temperature)
    return record
