"""Evidence metrics: lesion contrast, pointing game and deletion curve; known answers and
undefined cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autojoint.evaluation.evidence import (
    deletion_area,
    deletion_curve,
    evidence_lesion_contrast,
    evidence_peak_in_lesion,
)


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


def _lesion_share(batch: np.ndarray, lesion: np.ndarray) -> np.ndarray:
    """A "classifier" whose score is the share of the lesion still bright (1)."""
    return (batch[:, 0][:, lesion] == 1.0).mean(axis=1)


def test_deletion_curve_known_answer_and_random_baseline() -> None:
    image = np.zeros((1, 4, 5, 5))
    lesion = np.zeros((4, 5, 5), dtype=bool)
    lesion[1:3, 1:3, 1:3] = True  # 8 of the 100 voxels
    image[0][lesion] = 1.0
    region = np.ones_like(lesion)
    fractions = [0.0, 0.02, 0.04, 0.08, 0.5]
    before = image.copy()
    scores = deletion_curve(
        image,
        lesion.astype(float),
        region,
        fractions,
        lambda b: _lesion_share(b, lesion),
        fill=0.0,
    )
    np.testing.assert_array_equal(image, before)  # the input is not modified
    # The lesion ranks first: 2, 4, then all 8 of its voxels go.
    np.testing.assert_allclose(scores, [1.0, 0.75, 0.5, 0.0, 0.0])
    random_map = np.random.default_rng(0).random(lesion.shape)
    baseline = deletion_curve(
        image, random_map, region, fractions, lambda b: _lesion_share(b, lesion), fill=0.0
    )
    assert baseline[0] == 1.0
    assert deletion_area(fractions, scores) < deletion_area(fractions, baseline)


def test_deletion_stays_in_the_region_and_checks_its_inputs() -> None:
    image = np.ones((2, 3, 4))
    evidence = np.arange(12, dtype=float).reshape(3, 4)
    region = np.zeros((3, 4), dtype=bool)
    region[0] = True  # 4 voxels may go; the strongest evidence lies outside them
    seen: list[np.ndarray] = []

    def keep(batch: np.ndarray) -> np.ndarray:
        seen.append(batch.copy())
        return batch.mean(axis=(1, 2, 3))

    deletion_curve(image, evidence, region, [0.0, 0.5, 1.0], keep, fill=-1.0)
    deleted = seen[0][:, 0] == -1.0
    np.testing.assert_array_equal(deleted[1], region & (evidence >= 2))  # top 2 of the row
    np.testing.assert_array_equal(deleted[2], region)
    np.testing.assert_array_equal(seen[0][:, 0], seen[0][:, 1])  # every channel alike
    with pytest.raises(ValueError, match="spatial shape"):
        deletion_curve(image, evidence[:2], region, [0.0], keep, fill=0.0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        deletion_curve(image, evidence, region, [1.5], keep, fill=0.0)


def test_deletion_area_known_answers() -> None:
    assert deletion_area([0.0, 0.5], [0.3, 0.3]) == pytest.approx(0.3)
    assert deletion_area([0.0, 0.1, 0.2], [1.0, 0.0, 0.0]) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="increasing"):
        deletion_area([0.0, 0.0], [1.0, 1.0])
