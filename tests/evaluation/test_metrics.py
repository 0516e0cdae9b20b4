"""Metrics checked against hand-computed answers and brute-force references."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from autojoint.evaluation.metrics import (
    absent_label_scores,
    classification_scores,
    confusion_counts,
    diagnosis_scores,
    dice,
    roc_auc_one_vs_rest,
    roc_curve,
    segmentation_scores,
)
from autojoint.evaluation.surface import surface_metrics
from autojoint.evaluation.surfels import surfel_nsd


def _brute_counts(pred: np.ndarray, ref: np.ndarray) -> tuple[int, int, int, int]:
    tp = fp = fn = tn = 0
    for p, r in zip(pred.ravel().tolist(), ref.ravel().tolist(), strict=True):
        if p and r:
            tp += 1
        elif p:
            fp += 1
        elif r:
            fn += 1
        else:
            tn += 1
    return tp, fp, fn, tn


def _brute_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    pos, neg = scores[positive], scores[~positive]
    total = 0.0
    for a, b in itertools.product(pos.tolist(), neg.tolist()):
        total += 1.0 if a > b else 0.5 if a == b else 0.0
    return total / (len(pos) * len(neg))


def test_dice_known_values() -> None:
    ref = np.zeros((2, 3, 4), bool)
    ref[0, 0, :] = True  # 4 voxels
    pred = np.zeros_like(ref)
    pred[0, 0, :2] = True  # 2 voxels, both inside ref
    assert dice(pred, ref) == pytest.approx(2 * 2 / (4 + 2))
    assert dice(ref, ref) == 1.0
    assert dice(np.zeros_like(ref), ref) == 0.0
    assert math.isnan(dice(np.zeros_like(ref), np.zeros_like(ref)))


@pytest.mark.parametrize("seed", range(8))
def test_dice_and_counts_match_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(1, 6, size=3))
    pred = rng.random(shape) < rng.random()
    ref = rng.random(shape) < rng.random()
    tp, fp, fn, tn = _brute_counts(pred, ref)
    assert confusion_counts(pred, ref) == (tp, fp, fn, tn)
    expected = float("nan") if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)
    assert dice(pred, ref) == pytest.approx(expected, nan_ok=True)


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="shape"):
        dice(np.zeros((2, 2, 2), bool), np.zeros((2, 2, 3), bool))


def test_segmentation_scores_per_label_and_lesion_union() -> None:
    ref = np.zeros((1, 2, 6), np.uint8)
    ref[0, 0, :4] = 1  # ground glass: 4 voxels
    ref[0, 1, :2] = 2  # consolidation: 2 voxels
    pred = np.zeros_like(ref)
    pred[0, 0, :2] = 1  # half the ground glass
    pred[0, 1, :2] = 1  # consolidation found, but typed as ground glass
    s = segmentation_scores(pred, ref, {"ground_glass": 1, "consolidation": 2})
    assert set(s) == {"ground_glass", "consolidation", "lesion"}
    gg = s["ground_glass"]
    assert (gg["tp"], gg["fp"], gg["fn"], gg["n_ref"], gg["n_pred"]) == (2, 2, 2, 4, 4)
    assert gg["dice"] == pytest.approx(0.5)
    co = s["consolidation"]
    assert (co["tp"], co["fp"], co["fn"], co["dice"]) == (0, 0, 2, 0.0)
    le = s["lesion"]
    assert (le["tp"], le["fp"], le["fn"]) == (4, 0, 2)
    assert le["dice"] == pytest.approx(8 / 10)


def test_segmentation_scores_rejects_reserved_and_background_names() -> None:
    a = np.zeros((1, 1, 2), np.uint8)
    with pytest.raises(ValueError, match="reserved"):
        segmentation_scores(a, a, {"lesion": 1})
    with pytest.raises(ValueError, match="background"):
        segmentation_scores(a, a, {"bg": 0})


def test_classification_scores_hand_example() -> None:
    y_true = ["a", "a", "a", "b", "b", "c"]
    y_pred = ["a", "a", "b", "b", "c", "c"]
    s = classification_scores(y_true, y_pred, ["a", "b", "c"])
    assert s["accuracy"] == pytest.approx(4 / 6)
    assert s["classes"] == ["a", "b", "c"]
    assert s["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    a, b, c = (s["per_class"][k] for k in "abc")
    assert (a["sensitivity"], a["specificity"], a["precision"]) == (pytest.approx(2 / 3), 1.0, 1.0)
    assert a["f1"] == pytest.approx(0.8)
    assert (b["sensitivity"], b["specificity"], b["precision"], b["f1"]) == (0.5, 0.75, 0.5, 0.5)
    assert (c["sensitivity"], c["specificity"], c["precision"]) == (1.0, pytest.approx(0.8), 0.5)
    assert c["f1"] == pytest.approx(2 / 3)
    assert s["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)


def test_classification_undefined_values_are_nan() -> None:
    s = classification_scores(["a", "a", "b"], ["a", "b", "b"], ["a", "b", "c", "d"])
    assert math.isnan(s["per_class"]["c"]["sensitivity"])
    assert math.isnan(s["per_class"]["c"]["precision"])
    assert math.isnan(s["per_class"]["c"]["f1"])
    # macro F1 averages only a and b (c, d undefined): a: 2/3, b: 2/3
    assert s["macro_f1"] == pytest.approx(2 / 3)
    s = classification_scores(["a", "a"], ["a", "a"], ["a", "b"])
    assert math.isnan(s["per_class"]["a"]["specificity"])


def test_classification_rejects_unknown_and_mismatched() -> None:
    with pytest.raises(ValueError, match="not among"):
        classification_scores(["a"], ["z"], ["a", "b"])
    with pytest.raises(ValueError, match="predictions"):
        classification_scores(["a", "b"], ["a"], ["a", "b"])
    with pytest.raises(ValueError, match="no cases"):
        classification_scores([], [], ["a"])


def test_auc_known_values() -> None:
    y = ["a", "a", "b", "b"]
    perfect = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.2, 0.8]])
    r = roc_auc_one_vs_rest(y, perfect, ["a", "b"])
    assert r == {"a": 1.0, "b": 1.0, "macro": 1.0}
    r = roc_auc_one_vs_rest(y, perfect[:, ::-1], ["a", "b"])
    assert r["a"] == 0.0
    tied = np.full((4, 2), 0.5)
    assert roc_auc_one_vs_rest(y, tied, ["a", "b"])["macro"] == 0.5
    # one positive tied with one of two negatives: (1 + 0.5) / 2
    probs = np.array([[0.5, 0.5], [0.5, 0.5], [0.1, 0.9]])
    r = roc_auc_one_vs_rest(["a", "b", "b"], probs, ["a", "b"])
    assert r["a"] == pytest.approx(0.75)


@pytest.mark.parametrize("seed", range(6))
def test_auc_matches_pairwise_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    classes = ["x", "y", "z"]
    n = int(rng.integers(5, 40))
    y = [classes[i] for i in rng.integers(0, 3, size=n)]
    probs = np.round(rng.random((n, 3)), 1)  # coarse rounding -> many ties
    r = roc_auc_one_vs_rest(y, probs, classes)
    truth = np.array(y)
    expected = []
    for j, c in enumerate(classes):
        pos = truth == c
        if pos.all() or not pos.any():
            assert math.isnan(r[c])
            continue
        expected.append(_brute_auc(probs[:, j], pos))
        assert r[c] == pytest.approx(expected[-1], abs=1e-12)
    assert r["macro"] == pytest.approx(float(np.mean(expected)), abs=1e-12)


def test_auc_nan_without_positives_and_macro_excludes_it() -> None:
    r = roc_auc_one_vs_rest(
        ["a", "b"], np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1]]), ["a", "b", "c"]
    )
    assert math.isnan(r["c"])
    assert r["macro"] == 1.0


def test_auc_rejects_bad_shape() -> None:
    with pytest.raises(ValueError, match="shape"):
        roc_auc_one_vs_rest(["a", "b"], np.zeros((2, 3)), ["a", "b"])


def test_overlap_metrics_with_spacing_match_brute_force_and_surface_module() -> None:
    rng = np.random.default_rng(5)
    ref = rng.integers(0, 3, size=(4, 6, 5)).astype(np.uint8)
    pred = rng.integers(0, 3, size=(4, 6, 5)).astype(np.uint8)
    spacing = (3.0, 0.7, 0.9)
    labels = {"ground_glass": 1, "consolidation": 2}
    s = segmentation_scores(pred, ref, labels, spacing=spacing, tolerance_mm=1.5)
    for name, p, r in (
        ("ground_glass", pred == 1, ref == 1),
        ("consolidation", pred == 2, ref == 2),
        ("lesion", pred > 0, ref > 0),
    ):
        tp, fp, fn, tn = _brute_counts(p, r)
        got = s[name]
        assert (got["tp"], got["fp"], got["fn"], got["tn"]) == (tp, fp, fn, tn)
        assert got["iou"] == pytest.approx(tp / (tp + fp + fn))
        assert got["sensitivity"] == pytest.approx(tp / (tp + fn))
        assert got["specificity"] == pytest.approx(tn / (tn + fp))
        assert got["precision"] == pytest.approx(tp / (tp + fp))
        assert got["volume_ref_ml"] == pytest.approx((tp + fn) * 3.0 * 0.7 * 0.9 / 1000)
        assert got["volume_pred_ml"] == pytest.approx((tp + fp) * 3.0 * 0.7 * 0.9 / 1000)
        surface = surface_metrics(p, r, spacing, tolerance_mm=1.5)
        assert {k: got[k] for k in surface} == surface


def test_overlap_metrics_empty_conventions() -> None:
    empty = np.zeros((3, 3, 3), np.uint8)
    full = np.ones((3, 3, 3), np.uint8)
    both = segmentation_scores(empty, empty, {"a": 1}, spacing=(1, 1, 1))["a"]
    assert all(math.isnan(both[k]) for k in ("dice", "iou", "sensitivity", "precision", "nsd"))
    assert both["specificity"] == 1.0
    assert both == pytest.approx(absent_label_scores(27, spacing=(1, 1, 1)), nan_ok=True)
    missed = segmentation_scores(empty, full, {"a": 1}, spacing=(1, 1, 1))["a"]
    assert (missed["dice"], missed["iou"], missed["sensitivity"], missed["nsd"]) == (0, 0, 0, 0)
    assert math.isnan(missed["precision"]) and math.isnan(missed["specificity"])
    assert math.isnan(missed["hd95"]) and missed["aso"] == 0.0
    spurious = segmentation_scores(full, empty, {"a": 1}, spacing=(1, 1, 1))["a"]
    assert math.isnan(spurious["sensitivity"]) and spurious["precision"] == 0.0
    assert spurious["specificity"] == 0.0 and math.isnan(spurious["asd"])
    no_spacing = segmentation_scores(empty, full, {"a": 1})["a"]
    assert "nsd" not in no_spacing and "volume_ref_ml" not in no_spacing


def test_segmentation_scores_refuses_bad_spacing() -> None:
    a = np.zeros((2, 2, 2), np.uint8)
    with pytest.raises(ValueError, match="spacing"):
        segmentation_scores(a, a, {"a": 1}, spacing=(1.0, 1.0))


@pytest.mark.parametrize("seed", range(6))
def test_roc_curve_area_is_the_auc(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(4, 30))
    scores = np.round(rng.random(n), 1)
    positive = rng.random(n) < 0.5
    positive[:2] = [True, False]
    fpr, tpr = roc_curve(scores, positive)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert len(fpr) == len(np.unique(scores)) + 1
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    assert area == pytest.approx(_brute_auc(scores, positive), abs=1e-12)


def test_roc_curve_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="positive"):
        roc_curve(np.array([0.1, 0.2]), np.array([True, True]))


def test_diagnosis_scores_hand_example() -> None:
    """Two classes, four cases; AUC by hand: covid positives 0.9, 0.4 vs negatives 0.6, 0.2
    -> pairs won 3 of 4 -> 0.75; normal is the mirror image, also 0.75."""
    y_true = ["covid", "covid", "normal", "normal"]
    y_pred = ["covid", "normal", "covid", "normal"]
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.6, 0.4], [0.2, 0.8]])
    d = diagnosis_scores(y_true, y_pred, ["covid", "normal"], probs)
    assert d["accuracy"] == 0.5
    assert d["confusion_matrix"] == [[1, 1], [1, 1]]
    assert d["per_class"]["covid"]["auc"] == 0.75
    assert d["auc"] == {"covid": 0.75, "normal": 0.75, "macro": 0.75}
    assert d["macro_auc"] == 0.75
    assert d["roc"]["covid"] == {"fpr": [0.0, 0.0, 0.5, 0.5, 1.0], "tpr": [0.0, 0.5, 0.5, 1, 1]}
    without = diagnosis_scores(y_true, y_pred, ["covid", "normal"])
    assert without["auc"] is None and without["roc"] is None
    assert math.isnan(without["macro_auc"]) and math.isnan(without["per_class"]["covid"]["auc"])


def test_lesion_of_a_single_label_map_equals_direct_computation() -> None:
    rng = np.random.default_rng(8)
    ref = (rng.random((4, 6, 6)) < 0.3).astype(np.uint8)
    pred = (rng.random((4, 6, 6)) < 0.3).astype(np.uint8)
    s = segmentation_scores(pred, ref, {"lesion_label": 1}, spacing=(2.0, 1.0, 1.0))
    surface = surface_metrics(pred > 0, ref > 0, (2.0, 1.0, 1.0))
    assert s["lesion"] == s["lesion_label"]
    assert {k: s["lesion"][k] for k in surface} == surface


def test_surfel_nsd_is_opt_in_and_follows_the_empty_rules() -> None:
    rng = np.random.default_rng(9)
    ref = rng.integers(0, 3, size=(4, 6, 5)).astype(np.uint8)
    pred = rng.integers(0, 3, size=(4, 6, 5)).astype(np.uint8)
    spacing, labels = (3.0, 0.7, 0.9), {"ground_glass": 1, "consolidation": 2, "absent": 7}
    plain = segmentation_scores(pred, ref, labels, spacing=spacing, tolerance_mm=1.5)
    both = segmentation_scores(
        pred, ref, labels, spacing=spacing, tolerance_mm=1.5, use_surfel_nsd=True
    )
    for name, p, r in (("ground_glass", pred == 1, ref == 1), ("lesion", pred > 0, ref > 0)):
        assert both[name].pop("nsd_surfel") == surfel_nsd(p, r, spacing, tolerance_mm=1.5)
    assert math.isnan(both["absent"].pop("nsd_surfel"))
    both["consolidation"].pop("nsd_surfel")
    for name in plain:  # nothing else changes
        assert both[name] == pytest.approx(plain[name], nan_ok=True), name
    assert "nsd_surfel" not in plain["lesion"]
    absent = absent_label_scores(27, spacing=spacing, use_surfel_nsd=True)
    assert math.isnan(absent["nsd_surfel"])
    assert "nsd_surfel" not in segmentation_scores(pred, ref, labels, use_surfel_nsd=True)["lesion"]
