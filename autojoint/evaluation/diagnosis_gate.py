"""The diagnosis gate: empty the lesion mask of a case whose predicted diagnosis is a class
that never has lesions, chosen on cross-validation predictions like the component rule
(``evaluation.postprocessing``).

Why: a scan-level classifier sees the whole scan and is often surer about "normal" than
the segmentation head is about every voxel; a few false-positive voxels in a normal scan
cost its whole Dice (0 instead of 1). Only classes whose every training case has an empty
reference mask qualify (e.g. ``normal``; never a class where some cases carry lesions),
and the gate is kept only where it raised the mean lesion Dice of the pooled
cross-validation cases: a diseased scan called normal loses its whole mask, and that cost
is counted too.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

# A class qualifies only with at least this many training cases, all lesion-free: one or
# two empty masks are too little evidence that the class never has lesions.
MIN_CASES = 3
# The gate is kept only if the mean lesion Dice rises by more than this (as the
# component rule).
MIN_GAIN = 1e-4


@dataclass(frozen=True)
class GateCase:
    """One cross-validation case as the gate sees it.

    Attributes:
        reference: the reference diagnosis (None: none given).
        predicted: the predicted diagnosis (argmax of the diagnosis probabilities; None:
            no diagnosis predicted, the gate leaves the case alone).
        lesion_dice: Dice of every lesion label together, a correct empty mask 1.
        reference_empty: the reference mask has no lesion voxel.
    """

    reference: str | None
    predicted: str | None
    lesion_dice: float
    reference_empty: bool


@dataclass(frozen=True)
class GateChoice:
    """The outcome: the gated classes (empty: no class qualified), the mean lesion Dice
    without and with the gate, how many cases it empties and how many of those had
    reference lesions, and whether it is kept."""

    classes: tuple[str, ...]
    dice_before: float
    dice_after: float
    cases_emptied: int
    lesion_cases_emptied: int
    kept: bool


def lesion_free_classes(cases: Sequence[GateCase], min_cases: int = MIN_CASES) -> tuple[str, ...]:
    """The reference classes with at least ``min_cases`` cases, every one with an empty
    reference mask; none when no case has lesions at all (then nothing is learnt about
    any class)."""
    if all(c.reference_empty for c in cases):
        return ()
    counts: dict[str, list[bool]] = {}
    for c in cases:
        if c.reference is not None:
            counts.setdefault(c.reference, []).append(c.reference_empty)
    return tuple(
        sorted(name for name, empty in counts.items() if len(empty) >= min_cases and all(empty))
    )


def gated_dice(case: GateCase, classes: Collection[str]) -> float:
    """The case's lesion Dice once the gate has emptied its mask (or not)."""
    if case.predicted not in classes:  # None (no diagnosis) is never a gated class
        return case.lesion_dice
    return 1.0 if case.reference_empty else 0.0


def choose_diagnosis_gate(
    cases: Sequence[GateCase], *, min_cases: int = MIN_CASES, min_gain: float = MIN_GAIN
) -> GateChoice:
    """Gate the lesion-free classes if that raises the mean lesion Dice of ``cases`` by more
    than ``min_gain``."""
    classes = lesion_free_classes(cases, min_cases)
    before = float(np.mean([c.lesion_dice for c in cases])) if cases else math.nan
    if not classes:
        return GateChoice((), before, before, 0, 0, False)
    after = float(np.mean([gated_dice(c, classes) for c in cases]))
    emptied = [c for c in cases if c.predicted in classes]
    return GateChoice(
        classes,
        before,
        after,
        len(emptied),
        sum(not c.reference_empty for c in emptied),
        after > before + min_gain,
    )


def apply_diagnosis_gate(
    mask: np.ndarray, diagnosis: str | None, classes: Collection[str]
) -> np.ndarray:
    """``mask`` emptied (all background) when ``diagnosis`` is a gated class, else itself."""
    if diagnosis not in classes:
        return mask
    return np.zeros_like(mask)
