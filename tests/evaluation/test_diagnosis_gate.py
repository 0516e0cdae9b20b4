"""The diagnosis gate on hand-made cases: which classes qualify, the Dice with and without
it (known answers), when it is kept, and that it empties exactly the gated cases' masks."""

from __future__ import annotations

import numpy as np
import pytest

from autojoint.evaluation.diagnosis_gate import (
    GateCase,
    apply_diagnosis_gate,
    choose_diagnosis_gate,
    lesion_free_classes,
)


def _cases(rows: list[tuple[str | None, str | None, float, bool]]) -> list[GateCase]:
    return [GateCase(*row) for row in rows]


def test_only_classes_whose_every_case_is_lesion_free_qualify() -> None:
    cases = _cases(
        [
            ("normal", "normal", 0.0, True),
            ("normal", "normal", 1.0, True),
            ("normal", "CAP", 1.0, True),
            ("CAP", "CAP", 0.7, False),
            ("CAP", "CAP", 1.0, True),  # an empty CAP case does not make CAP lesion-free
            ("CAP", "CAP", 0.6, False),
            ("COVID-19", "COVID-19", 0.8, False),
            (None, "normal", 1.0, True),  # no reference diagnosis: not counted
        ]
    )
    assert lesion_free_classes(cases) == ("normal",)
    assert lesion_free_classes(cases, min_cases=4) == ()  # three normal cases only
    # no lesion anywhere: nothing is learnt about any class
    empty = [GateCase("normal", "normal", 1.0, True)] * 3 + [GateCase("CAP", "CAP", 1.0, True)]
    assert lesion_free_classes(empty) == ()


def test_gate_dice_is_counted_with_its_cost() -> None:
    # two normals with false positives (Dice 0) called normal: 0 -> 1 each; a third normal
    # already right; a COVID case (Dice 0.8) called normal loses its mask: 0.8 -> 0
    cases = _cases(
        [
            ("normal", "normal", 0.0, True),
            ("normal", "normal", 0.0, True),
            ("normal", "normal", 1.0, True),
            ("normal", "CAP", 0.0, True),  # called CAP: the gate leaves it alone
            ("COVID-19", "normal", 0.8, False),
            ("COVID-19", "COVID-19", 0.6, False),
            ("CAP", None, 0.5, False),  # no prediction: left alone
        ]
    )
    choice = choose_diagnosis_gate(cases)
    assert choice.classes == ("normal",)
    assert choice.dice_before == pytest.approx((0.8 + 0.6 + 0.5 + 1.0) / 7)
    assert choice.dice_after == pytest.approx((1.0 + 1.0 + 1.0 + 0.6 + 0.5) / 7)
    assert (choice.cases_emptied, choice.lesion_cases_emptied) == (4, 1)
    assert choice.kept


def test_gate_that_costs_more_than_it_gains_is_not_kept() -> None:
    cases = _cases(
        [
            ("normal", "normal", 1.0, True),
            ("normal", "normal", 1.0, True),
            ("normal", "normal", 0.0, True),
            ("COVID-19", "normal", 0.9, False),
            ("COVID-19", "normal", 0.7, False),
        ]
    )
    choice = choose_diagnosis_gate(cases)
    assert choice.dice_after == pytest.approx(3 / 5) and choice.dice_before == pytest.approx(
        3.6 / 5
    )
    assert not choice.kept
    # an exact tie is not a gain either
    tie = _cases([("normal", "normal", 1.0, True)] * 3 + [("CAP", "CAP", 0.5, False)])
    assert not choose_diagnosis_gate(tie).kept
    none = choose_diagnosis_gate(_cases([("CAP", "CAP", 0.5, False)] * 3))
    assert none.classes == () and not none.kept and none.dice_after == none.dice_before


def test_apply_empties_only_gated_diagnoses() -> None:
    mask = np.zeros((3, 4, 5), np.uint8)
    mask[1, 1:3, 2:4] = 2
    gated = apply_diagnosis_gate(mask, "normal", ("normal",))
    assert gated.shape == mask.shape and gated.dtype == mask.dtype and not gated.any()
    assert mask.any()  # the input is not changed
    assert apply_diagnosis_gate(mask, "CAP", ("normal",)) is mask
    assert apply_diagnosis_gate(mask, None, ("normal",)) is mask
