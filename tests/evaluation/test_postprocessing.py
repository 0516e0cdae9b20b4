"""Removal of small lesion components: only specks below the threshold go, and a threshold
is chosen only for a label whose cross-validation Dice it raises."""

from __future__ import annotations

import numpy as np
import pytest

from autojoint.evaluation.model_selection import choose_postprocessing
from autojoint.evaluation.postprocessing import (
    case_components,
    choose_threshold,
    remove_small_components,
)

SHAPE = (10, 24, 24)


def _case(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference: a ground-glass block (label 1) and a small consolidation (label 2, 8
    voxels). Prediction: both right, plus single-voxel ground-glass specks."""
    ref = np.zeros(SHAPE, np.uint8)
    ref[2:6, 4:12, 4:12] = 1
    ref[7:9, 16:18, 16:18] = 2
    pred = ref.copy()
    pred[3:5, 5:11, 11:12] = 0  # a few misses, so Dice is not already 1
    rng = np.random.default_rng(seed)
    for z, y, x in zip(
        rng.integers(0, 10, 4), rng.integers(14, 24, 4), rng.integers(0, 10, 4), strict=True
    ):
        pred[z, y, x] = 1
    return pred, ref


def test_remove_small_components_by_volume() -> None:
    mask = np.zeros((4, 8, 8), np.uint8)
    mask[0, 0, 0] = 1  # 1 voxel = 2 mm3
    mask[2:4, 4:6, 4:6] = 1  # 8 voxels = 16 mm3
    mask[0, 6, 6] = 2
    out = remove_small_components(mask, 1, 10.0, voxel_volume_mm3=2.0)
    assert out[0, 0, 0] == 0 and out[2:4, 4:6, 4:6].all() and out[0, 6, 6] == 2
    assert mask[0, 0, 0] == 1  # input untouched
    corner = np.zeros((3, 3, 3), np.uint8)
    corner[0, 0, 0] = corner[1, 1, 1] = 1  # corner-touching: one 2-voxel component
    assert remove_small_components(corner, 1, 2.0, 1.0).sum() == 2


def test_threshold_chosen_only_where_it_helps() -> None:
    masks = [_case(seed) for seed in range(5)]
    rules = choose_postprocessing(masks, {"background": 0, "ggo": 1, "cons": 2}, 1.0)
    assert [r.label for r in rules] == ["ggo"]  # the small true consolidation is kept
    rule = rules[0]
    assert 1.0 < rule.min_volume_mm3 < 8 * 32  # above a speck, below the true lesion
    assert rule.dice_after > rule.dice_before
    cleaned = remove_small_components(masks[0][0], 1, rule.min_volume_mm3, 1.0)
    assert np.array_equal(cleaned == 1, (masks[0][0] == 1) & (masks[0][1] == 1))


def test_no_threshold_without_false_positives() -> None:
    ref = np.zeros(SHAPE, np.uint8)
    ref[2:6, 4:12, 4:12] = 1
    ref[8, 20, 20] = 1  # a real one-voxel lesion
    cases = [case_components(ref, ref, 1, 1.0)] * 3
    choice = choose_threshold(cases, 1.0)
    assert choice.threshold_mm3 is None and choice.dice_after == pytest.approx(1.0)
    assert choice.candidates  # thresholds were tried
