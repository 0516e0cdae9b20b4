"""autojoint_find_best_configuration on constructed cross-validation predictions: the better
model wins, ensembles average probabilities, missing folds are listed, the choice is
written with its calibration, diagnosis gate and postprocessing."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from autojoint.cli import find_best_configuration as cli_best
from autojoint.evaluation.cv_predictions import CvCase, CvPredictions
from autojoint.evaluation.model_selection import (
    _gate_cases_from_summaries,
    choose_gate,
    find_best_configuration,
)
from autojoint.io.best_configuration import (
    ModelRef,
    read_best_configuration,
    write_best_configuration,
)
from autojoint.io.calibration import read_calibration
from autojoint.io.workdir import preprocessed_dir, variant_dir
from autojoint.pipeline import plan_and_preprocess
from autojoint.preprocessing.preprocess import load_preprocessed
from tests.evaluation.cv_fixtures import lesion_dice, one_hot, write_fold
from tests.synthetic import CLASSES, LABELS, make_raw_dataset

FOLDS = ("0", "1", "2", "3", "4")
GOOD, POOR = ModelRef("good", "fullres"), ModelRef("default", "fullres")


def _speckle(mask: np.ndarray, seed: int) -> np.ndarray:
    """``mask`` with four one-voxel ground-glass specks (false positives)."""
    out = mask.copy()
    rng = np.random.default_rng(seed)
    flat = np.flatnonzero(out == 0)
    out.ravel()[rng.choice(flat, 4, replace=False)] = 1
    return out


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five cases, one per fold. ``good``: the reference plus specks, confident right
    diagnoses; ``default``: the lesions shifted, diagnoses near chance."""
    root = tmp_path_factory.mktemp("selection")
    raw = make_raw_dataset(root / "raw", num_cases=5)
    work = root / "work"
    plan_and_preprocess(raw, work)
    for i, fold in enumerate(FOLDS):
        case = f"case_{i:03d}"
        ref = np.asarray(load_preprocessed(preprocessed_dir(work), case).seg)
        truth = CLASSES[i % 3]
        right = [0.8 if c == truth else 0.1 for c in CLASSES]
        unsure = [0.4 if c == truth else 0.3 for c in CLASSES]
        good = _speckle(ref, i)
        poor = np.roll(ref, 4, axis=2)
        for variant, pred, dx in (("good", good, right), ("default", poor, unsure)):
            case_dict = {
                "case": case,
                "diagnosis_ref": truth,
                "diagnosis": dx,
                "pred": pred,
                "ref": ref,
                "probs": one_hot(pred, len(LABELS)),
            }
            write_fold(work, fold, [case_dict], LABELS, CLASSES, variant=variant)
    return work


def test_better_model_wins_and_choice_is_written(work: Path) -> None:
    spec_path = work / "best_configuration.json"
    assert cli_best.main(["-w", str(work)]) == 0
    spec = read_best_configuration(spec_path)
    assert spec.members == (GOOD,)
    names = [r.name for r in spec.ranking]
    assert names[0] == "good/fullres" and names[-1] == "default/fullres"
    assert "default/fullres + good/fullres" in names  # the pair was scored
    assert spec.ranking[0].accuracy == 1.0 and spec.ranking[0].macro_auc == 1.0
    assert f"--spec {spec_path}" in spec.predict_command
    # the specks cost Dice on the cross-validation data: ground glass gets a threshold
    assert [r.label for r in spec.postprocessing] == ["ground_glass"]
    assert spec.postprocessing[0].dice_after > spec.postprocessing[0].dice_before
    assert spec.temperature is not None and spec.temperature > 0
    for model in (GOOD, POOR):  # each model keeps its own temperature
        cal = read_calibration(variant_dir(work, model.variant, model.configuration))
        assert cal is not None and cal.num_cases == 5 and cal.folds == FOLDS


def test_ensemble_row_is_the_mean_of_the_members(work: Path, tmp_path: Path) -> None:
    record = find_best_configuration(work, tmp_path / "b.json", folds=FOLDS)
    pair = next(r for r in record.ranking if len(r.members) == 2)
    dice = []
    for i, fold in enumerate(FOLDS):
        case = f"case_{i:03d}"
        ref = np.asarray(load_preprocessed(preprocessed_dir(work), case).seg)
        mean = sum(
            np.load(variant_dir(work, v) / f"fold_{fold}/validation/{case}_probabilities.npz")[
                "probabilities"
            ].astype(np.float32)
            for v in ("good", "default")
        )
        d = lesion_dice(np.argmax(mean, axis=0), ref)
        dice.append(1.0 if np.isnan(d) else d)
    assert pair.lesion_dice == pytest.approx(np.mean(dice))
    only_dice = find_best_configuration(work, tmp_path / "c.json", folds=FOLDS, weights=(1, 0))
    assert only_dice.ranking[0].score == pytest.approx(only_dice.ranking[0].lesion_dice)


def test_missing_folds_are_listed(work: Path, tmp_path: Path) -> None:
    summaries = {
        v: variant_dir(work, v) / "fold_4" / "validation" / "summary.json"
        for v in ("good", "default")
    }
    kept = {v: p.read_bytes() for v, p in summaries.items()}
    try:
        summaries["good"].unlink()
        record = find_best_configuration(work, tmp_path / "b.json", folds=FOLDS)
        assert record.members == (POOR,)  # good is left out, with a warning
        summaries["default"].unlink()
        with pytest.raises(FileNotFoundError, match=r"good/fullres: folds 4.*--folds"):
            find_best_configuration(work, tmp_path / "b.json", folds=FOLDS)
        record = find_best_configuration(work, tmp_path / "b.json", folds=FOLDS[:4])
        assert record.members == (GOOD,) and record.folds == FOLDS[:4]
    finally:
        for v, p in summaries.items():
            p.write_bytes(kept[v])


@pytest.fixture(scope="module")
def gated_work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Nine cases (three per class) in three folds. ``default``: the reference plus specks
    (so each normal scan scores Dice 0), every diagnosis right except case_003 (COVID-19)
    called normal."""
    root = tmp_path_factory.mktemp("gate")
    raw = make_raw_dataset(root / "raw", num_cases=9)
    work = root / "work"
    plan_and_preprocess(raw, work)
    for fold in GATE_FOLDS:
        cases = []
        for i in range(int(fold), 9, 3):
            case = f"case_{i:03d}"
            ref = np.asarray(load_preprocessed(preprocessed_dir(work), case).seg)
            truth = CLASSES[i % 3]
            called = "normal" if i == 3 else truth
            pred = _speckle(ref, i)
            cases.append(
                {
                    "case": case,
                    "diagnosis_ref": truth,
                    "diagnosis": [0.8 if c == called else 0.1 for c in CLASSES],
                    "pred": pred,
                    "ref": ref,
                    "probs": one_hot(pred, len(LABELS)),
                }
            )
        write_fold(work, fold, cases, LABELS, CLASSES)
    return work


GATE_FOLDS = ("0", "1", "2")


def test_diagnosis_gate_is_chosen_with_its_cost_and_written(gated_work: Path) -> None:
    spec_path = gated_work / "best_configuration.json"
    assert cli_best.main(["-w", str(gated_work), "--folds", *GATE_FOLDS]) == 0
    gate = read_best_configuration(spec_path).diagnosis_gate
    assert gate is not None and gate.classes == ("normal",)
    before, after = [], []
    for i in range(9):
        case = f"case_{i:03d}"
        ref = np.asarray(load_preprocessed(preprocessed_dir(gated_work), case).seg)
        d = lesion_dice(_speckle(ref, i), ref)
        before.append(1.0 if np.isnan(d) else d)
        after.append(0.0 if i == 3 else 1.0 if i % 3 == 2 else before[-1])
    assert before[2] == before[5] == before[8] == 0.0  # the specks cost the normal scans
    assert gate.dice_before == pytest.approx(np.mean(before))
    assert gate.dice_after == pytest.approx(np.mean(after))
    assert (gate.cases_emptied, gate.lesion_cases_emptied) == (4, 1)


def test_record_without_a_gate_reads_as_none(work: Path, tmp_path: Path) -> None:
    """best_configuration.json written before the gate existed still reads."""
    record = find_best_configuration(work, tmp_path / "b.json", folds=FOLDS)
    assert record.diagnosis_gate is None  # one normal case: too few to qualify
    path = tmp_path / "old.json"
    write_best_configuration(path, record)
    data = json.loads(path.read_text(encoding="utf-8"))
    del data["diagnosis_gate"]
    path.write_text(json.dumps(data), encoding="utf-8")
    assert read_best_configuration(path).diagnosis_gate is None


def test_diagnosis_gate_needs_no_saved_probabilities(gated_work: Path, tmp_path: Path) -> None:
    """Without the segmentation probability files the gate is chosen from summary.json
    (lesion Dice, reference voxel count, diagnosis probabilities) with the same figures;
    no component rule can be chosen then."""
    with_files = find_best_configuration(gated_work, tmp_path / "a.json", folds=GATE_FOLDS)
    files = sorted(gated_work.rglob("*_probabilities.npz"))
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    moved = [(p, hidden / f"{i}.npz") for i, p in enumerate(files)]
    try:
        for src, dst in moved:
            src.rename(dst)
        record = find_best_configuration(gated_work, tmp_path / "b.json", folds=GATE_FOLDS)
    finally:
        for src, dst in moved:
            dst.rename(src)
    assert record.diagnosis_gate is not None and with_files.diagnosis_gate is not None
    assert record.diagnosis_gate.classes == ("normal",)
    assert record.diagnosis_gate.dice_before == pytest.approx(with_files.diagnosis_gate.dice_before)
    assert record.diagnosis_gate.dice_after == pytest.approx(with_files.diagnosis_gate.dice_after)
    assert record.postprocessing == ()


def test_summary_gate_leaves_out_cases_without_a_reference_mask(tmp_path: Path) -> None:
    """A diagnosis-only case (no mask, so no lesion metrics) tells nothing about lesions:
    it is left out, not a reason to choose no gate; old summaries without n_ref give none."""

    def case(name: str, ref: str, called: str, dice: float, n_ref: int | None) -> CvCase:
        probs = tuple(0.8 if c == called else 0.1 for c in CLASSES)
        metrics = {} if n_ref is None else {"lesion": dice}
        return CvCase(name, "0", metrics, ref, probs, None, n_ref)

    cases = [case(f"n{i}", "normal", "normal", math.nan if i else 0.0, 0) for i in range(3)]
    cases += [case("c0", "CAP", "CAP", 0.7, 50), case("x", "CAP", "normal", math.nan, None)]
    cv = CvPredictions(tmp_path, ("0",), dict(LABELS), tuple(CLASSES), tuple(cases))
    gate_cases = _gate_cases_from_summaries(cv)
    assert gate_cases is not None and [c.predicted for c in gate_cases] == ["normal"] * 3 + ["CAP"]
    gate = choose_gate(gate_cases, cv.classes)
    assert gate is not None and gate.dice_before == pytest.approx(2.7 / 4)
    assert gate.dice_after == pytest.approx(3.7 / 4)
    old = [dataclasses.replace(c, lesion_ref_voxels=None) for c in cases]
    assert _gate_cases_from_summaries(dataclasses.replace(cv, cases=tuple(old))) is None
