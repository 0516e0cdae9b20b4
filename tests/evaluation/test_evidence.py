"""Lesion contrast of evidence maps: known answers and undefined cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autojoint.evaluation.evidence import evidence_lesion_contrast, evidence_peak_in_lesion


def test_contrast_known_answer_with_and_without_region() -> None:
    ev = np.zeros((2, 4, 4))
    lesion = np.zeros_like(ev, dtype=bool)
    lesion[0, :2, :2] = True  # 4 voxels of evidence 3
    ev[lesion] = 3.0
    ev[1] = 1.0  # 16 voxels of evidence 1 in the second slice, 12 of 0 in the first
    region = np.zeros_like(lesion)
    region[1] = True
    assert evidence_lesion_contrast(ev, lesion, region) == pytest.approx(3.0)
    # Whole volume outside the lesion: (16 * 1 + 12 * 0) / 28.
    assert evidence_lesion_contrast(ev, lesion) == pytest.approx(3.0 / (16 / 28))


def test_uniform_evidence_has_contrast_one_and_undefined_cases_are_nan() -> None:
    ev = np.full((3, 3), 0.5)
    lesion = np.zeros((3, 3), dtype=bool)
    lesion[1, 1] = True
    assert evidence_lesion_contrast(ev, lesion) == pytest.approx(1.0)
    assert math.isnan(evidence_lesion_contrast(ev, np.zeros_like(lesion)))
    assert math.isnan(evidence_lesion_contrast(ev, np.ones_like(lesion)))
    zero_outside = np.where(lesion, 1.0, 0.0)
    assert math.isnan(evidence_lesion_contrast(zero_outside, lesion))
    with pytest.raises(ValueError, match="shapes must match"):
        evidence_lesion_contrast(ev, lesion[:2])


def test_evidence_peak_in_lesion_known_answers() -> None:
    lesion = np.zeros((2, 4, 4), dtype=bool)
    lesion[1, 1:3, 1:3] = True
    evidence = np.zeros((2, 4, 4))
    evidence[1, 2, 2] = 5.0
    assert evidence_peak_in_lesion(evidence, lesion)
    evidence[0, 0, 0] = 6.0  # a stronger peak outside the lesion
    assert not evidence_peak_in_lesion(evidence, lesion)
    with pytest.raises(ValueError, match="shapes"):
        evidence_peak_in_lesion(evidence, lesion[0])
