"""``WORK/best_configuration.json``: which trained model (or ensemble of models) to predict
with, its postprocessing and calibration, chosen on the cross-validation predictions by
``autojoint_find_best_configuration``; ``autojoint_predict --spec FILE`` follows it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from autojoint.io.records import read_versioned, write_record

BEST_CONFIGURATION_FILE = "best_configuration.json"
BEST_CONFIGURATION_SCHEMA_VERSION = 1
_FIX = "run autojoint_find_best_configuration -w WORK again to rewrite it"


@dataclass(frozen=True)
class ModelRef:
    """One trained model: a variant in a configuration (``io.variants``)."""

    variant: str
    configuration: str

    @property
    def name(self) -> str:
        return f"{self.variant}/{self.configuration}"


@dataclass(frozen=True)
class RankedCandidate:
    """One row of the ranking: a model or an ensemble (the mean of its members'
    probabilities) scored on the pooled cross-validation cases (NaN: not scored)."""

    name: str
    members: tuple[ModelRef, ...]
    lesion_dice: float
    accuracy: float
    macro_auc: float
    score: float
    num_cases: int


@dataclass(frozen=True)
class PostprocessingRule:
    """Remove components of ``label`` (value ``value``) smaller than ``min_volume_mm3``;
    the label's mean cross-validation Dice without and with the rule."""

    label: str
    value: int
    min_volume_mm3: float
    dice_before: float
    dice_after: float


@dataclass(frozen=True)
class DiagnosisGate:
    """Empty the lesion mask of a case predicted as one of ``classes`` (classes whose every
    training case is lesion-free, ``evaluation.diagnosis_gate``); the mean lesion Dice of
    the pooled cross-validation cases without and with it, the cases it emptied there and
    how many of those had reference lesions (its cost)."""

    classes: tuple[str, ...]
    dice_before: float
    dice_after: float
    cases_emptied: int
    lesion_cases_emptied: int


@dataclass(frozen=True)
class BestConfiguration:
    """The choice and how it was made (docs/model_selection.md).

    Attributes:
        members: the models to predict with (two or more: an ensemble, the mean of their
            probabilities).
        folds: the folds of each member to load (each member's fold ensemble).
        checkpoint: which checkpoint of each fold.
        temperature: temperature scaling of the diagnosis probabilities fitted on the
            chosen candidate's cross-validation predictions; None: not fitted.
        postprocessing: the rules kept (empty: none helped).
        diagnosis_gate: the diagnosis gate, applied before the rules; None: not kept (no
            lesion-free class, it did not help, or a record written before it existed).
        ranking: every candidate, best first.
        weights: (lesion Dice, macro-AUC) weights of the score.
        predict_command: the command that predicts with this choice.
    """

    members: tuple[ModelRef, ...]
    folds: tuple[str, ...]
    checkpoint: str
    temperature: float | None
    postprocessing: tuple[PostprocessingRule, ...]
    ranking: tuple[RankedCandidate, ...]
    weights: tuple[float, float]
    predict_command: str
    created: str
    diagnosis_gate: DiagnosisGate | None = None
    schema_version: int = BEST_CONFIGURATION_SCHEMA_VERSION


def read_best_configuration(path: Path) -> BestConfiguration:
    """Read and check a ``best_configuration.json``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: malformed, another schema version, no members, a diagnosis gate of no
            class, or a bad temperature.
    """
    record = read_versioned(Path(path), BestConfiguration, BEST_CONFIGURATION_SCHEMA_VERSION, _FIX)
    if not record.members:
        raise ValueError(f"{path}: 'members' is empty; {_FIX}.")
    if record.diagnosis_gate is not None and not record.diagnosis_gate.classes:
        raise ValueError(f"{path}: 'diagnosis_gate' names no class; {_FIX}.")
    if record.temperature is not None and not record.temperature > 0:
        raise ValueError(f"{path}: temperature must be > 0, got {record.temperature}; {_FIX}.")
    return record


def write_best_configuration(path: Path, record: BestConfiguration) -> Path:
    """Write the record atomically; returns ``path``."""
    return write_record(record, Path(path))
