"""Choose what to predict with from the cross-validation predictions of a work dir
(``autojoint_find_best_configuration``; how-to and definitions: docs/model_selection.md).

Candidates are every trained model (variant x configuration, ``io.variants``) whose folds
all hold a final validation, and every pair of models of one configuration whose
validation probabilities were saved (an ensemble: the mean of the two models'
probabilities; one configuration, because the probabilities are stored on its
preprocessed grid). Each is scored on the pooled validation cases of all folds:

- lesion Dice: per case, over every lesion label together (a correct empty prediction
  scores 1), averaged over the cases;
- diagnosis accuracy and macro-AUC (one-vs-rest) over the cases with a diagnosis;
- score = ``(w_dice * lesion Dice + w_auc * macro-AUC) / (w_dice + w_auc)``, both terms
  in [0, 1] (default weights 1, 1); a term that is undefined (no masks, no diagnoses)
  drops out.

The best candidate then gets its diagnosis gate (``evaluation.diagnosis_gate``), its
postprocessing (``evaluation.postprocessing``, chosen on the gated masks) and its
temperature (``evaluation.model_calibration``), chosen on the same cases.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from autojoint.arrays.labels import label_argmax
from autojoint.evaluation.cv_predictions import (
    CvPredictions,
    load_cv_predictions,
    missing_folds,
    read_segmentation_probabilities,
)
from autojoint.evaluation.diagnosis_gate import (
    GateCase,
    apply_diagnosis_gate,
    choose_diagnosis_gate,
)
from autojoint.evaluation.metrics import LESION_KEY, diagnosis_scores
from autojoint.evaluation.model_calibration import (
    calibrate_model,
    calibration_from_probabilities,
)
from autojoint.evaluation.postprocessing import (
    CaseComponents,
    case_components,
    choose_threshold,
)
from autojoint.io.best_configuration import (
    BestConfiguration,
    DiagnosisGate,
    ModelRef,
    PostprocessingRule,
    RankedCandidate,
)
from autojoint.io.variants import trained_variants
from autojoint.io.workdir import preprocessed_dir, variant_dir
from autojoint.planning.schema import CONFIGURATIONS
from autojoint.preprocessing.preprocess import load_preprocessed

logger = logging.getLogger(__name__)

DEFAULT_WEIGHTS = (1.0, 1.0)  # lesion Dice, macro-AUC
FINAL_CHECKPOINT = "checkpoint_final.pt"  # the checkpoint the final validation used


@dataclass(frozen=True)
class _Scored:
    """A candidate's pooled per-case predictions: lesion Dice per case (None without
    masks) and diagnosis probabilities ``(N, C)`` with references (N = 0 without)."""

    members: tuple[ModelRef, ...]
    lesion_dice: np.ndarray | None
    probs: np.ndarray
    labels: np.ndarray


def find_models(
    work_dir: Path, folds: Sequence[str]
) -> tuple[dict[ModelRef, CvPredictions], dict[str, list[str]]]:
    """Every trained model with a final validation in all ``folds``, and the others with
    their missing folds."""
    found: dict[ModelRef, CvPredictions] = {}
    incomplete: dict[str, list[str]] = {}
    for configuration in CONFIGURATIONS:
        for variant in trained_variants(work_dir, configuration):
            model = ModelRef(variant, configuration)
            folder = variant_dir(work_dir, variant, configuration)
            if absent := missing_folds(folder, folds):
                incomplete[model.name] = absent
            else:
                found[model] = load_cv_predictions(folder, folds)
    return found, incomplete


def _both_empty_is_one(values: Sequence[float]) -> np.ndarray:
    """Per-case Dice with NaN (both masks empty: a correct "no lesion") counted as 1."""
    out = np.array(values, dtype=np.float64)
    out[np.isnan(out)] = 1.0
    return out


def _lesion_dice(pred: np.ndarray, ref: np.ndarray) -> float:
    p, r = pred > 0, ref > 0
    denominator = int(p.sum()) + int(r.sum())
    return 1.0 if denominator == 0 else 2.0 * int((p & r).sum()) / denominator


def _single(model: ModelRef, cv: CvPredictions) -> _Scored:
    dice = [c.dice.get(LESION_KEY, math.nan) for c in cv.cases]
    has_masks = any(LESION_KEY in c.dice for c in cv.cases)
    _, probs, labels = cv.diagnosed()
    return _Scored((model,), _both_empty_is_one(dice) if has_masks else None, probs, labels)


def _mean_by_case(per_member: Sequence[Mapping[str, Sequence[float]]]) -> dict[str, np.ndarray]:
    """Per case every member has (sorted by name), the mean of the members' values."""
    common = sorted(set.intersection(*(set(m) for m in per_member)))
    return {case: np.mean([m[case] for m in per_member], axis=0) for case in common}


def _mean_probabilities(cvs: Sequence[CvPredictions]) -> tuple[np.ndarray, np.ndarray]:
    """Members' diagnosis probabilities averaged per case (cases matched by name)."""
    diagnosed = [cv.diagnosed() for cv in cvs]
    mean = _mean_by_case(
        [{c.case: p for c, p in zip(cases, probs, strict=True)} for cases, probs, _ in diagnosed]
    )
    if not mean:
        return np.zeros((0, len(cvs[0].classes))), np.zeros(0, np.int64)
    cases, _, labels = diagnosed[0]
    label_of = {c.case: y for c, y in zip(cases, labels, strict=True)}
    return np.array(list(mean.values())), np.array([label_of[c] for c in mean], np.int64)


def _ensemble_masks(
    work_dir: Path, cvs: Sequence[CvPredictions], configuration: str
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per pooled case (by name, sorted), the argmax of the members' mean segmentation
    probabilities and the reference mask (preprocessed grid)."""
    pre_dir = preprocessed_dir(work_dir, configuration)
    files = [{c.case: c.probabilities_file for c in cv.cases} for cv in cvs]
    out = {}
    for case in sorted(files[0]):
        reference = load_preprocessed(pre_dir, case, mmap_mode="r").seg
        if reference is None:
            continue
        paths = [f.get(case) for f in files]
        if any(p is None for p in paths):
            raise FileNotFoundError(
                f"case {case}: a member lacks its validation probabilities; train with "
                "--save-validation-probabilities"
            )
        total = np.sum([read_segmentation_probabilities(p) for p in paths if p], axis=0)
        out[case] = (label_argmax(total), np.asarray(reference))
    return out


def _pair_ok(a: CvPredictions, b: CvPredictions) -> bool:
    same_cases = {(c.fold, c.case) for c in a.cases} == {(c.fold, c.case) for c in b.cases}
    return same_cases and a.labels == b.labels and a.classes == b.classes


def rank_candidates(
    scored: Sequence[_Scored], weights: tuple[float, float] = DEFAULT_WEIGHTS
) -> list[RankedCandidate]:
    """Score every candidate and sort them best first (ties: fewer members, then name)."""
    rows = []
    for s in scored:
        dice = float(np.mean(s.lesion_dice)) if s.lesion_dice is not None else math.nan
        accuracy = auc = math.nan
        if len(s.labels):
            classes = [str(i) for i in range(s.probs.shape[1])]
            dx = diagnosis_scores(
                [classes[i] for i in s.labels],
                [classes[i] for i in s.probs.argmax(axis=1)],
                classes,
                s.probs,
            )
            accuracy, auc = float(dx["accuracy"]), float(dx["macro_auc"])
        terms = [(w, v) for w, v in zip(weights, (dice, auc), strict=True) if math.isfinite(v)]
        total = sum(w for w, _ in terms)
        score = sum(w * v for w, v in terms) / total if total > 0 else math.nan
        n = len(s.lesion_dice) if s.lesion_dice is not None else len(s.labels)
        name = " + ".join(m.name for m in s.members)
        rows.append(RankedCandidate(name, s.members, dice, accuracy, auc, score, n))
    return sorted(
        rows,
        key=lambda r: (-r.score if math.isfinite(r.score) else math.inf, len(r.members), r.name),
    )


def choose_postprocessing(
    masks: Sequence[tuple[np.ndarray, np.ndarray]],
    labels: dict[str, int],
    voxel_volume_mm3: float,
) -> list[PostprocessingRule]:
    """Per lesion label, the component-size threshold that raised its mean Dice (none
    where no threshold helped)."""
    rules = []
    for name, value in sorted(labels.items(), key=lambda kv: kv[1]):
        if value == 0:
            continue
        cases: list[CaseComponents] = [
            case_components(pred, ref, value, voxel_volume_mm3) for pred, ref in masks
        ]
        choice = choose_threshold(cases, voxel_volume_mm3)
        logger.info(
            "postprocessing %s: %s (mean Dice %.4f -> %.4f; %d thresholds tried)",
            name,
            "none helped"
            if choice.threshold_mm3 is None
            else f"remove components < {choice.threshold_mm3:.1f} mm3",
            choice.dice_before,
            choice.dice_after,
            len(choice.candidates),
        )
        if choice.threshold_mm3 is not None:
            rules.append(
                PostprocessingRule(
                    name, value, choice.threshold_mm3, choice.dice_before, choice.dice_after
                )
            )
    return rules


def _predicted_classes(cvs: Sequence[CvPredictions]) -> dict[str, str]:
    """Per case with diagnosis probabilities from every member, the argmax class of their
    mean (a case without: absent)."""
    mean = _mean_by_case(
        [{c.case: c.probabilities for c in cv.cases if c.probabilities} for cv in cvs]
    )
    return {case: cvs[0].classes[int(np.argmax(p))] for case, p in mean.items()}


def _gate_cases_from_masks(
    masks: Mapping[str, tuple[np.ndarray, np.ndarray]],
    predicted: Mapping[str, str],
    cvs: Sequence[CvPredictions],
) -> list[GateCase]:
    """The gate's view of a candidate whose pooled masks are ``masks`` and whose predicted
    diagnoses are ``predicted``."""
    references = {c.case: c.diagnosis_ref for c in cvs[0].cases}
    return [
        GateCase(
            references.get(case), predicted.get(case), _lesion_dice(pred, ref), not np.any(ref > 0)
        )
        for case, (pred, ref) in masks.items()
    ]


def _gate_cases_from_summaries(cv: CvPredictions) -> list[GateCase] | None:
    """The gate's view of one model from its ``summary.json`` alone (lesion Dice, reference
    voxel count, diagnosis probabilities): the gate needs no saved segmentation
    probabilities. Cases without a reference mask (diagnosis only) are left out; None when
    no case has the reference count (a summary written before it was recorded)."""
    predicted = _predicted_classes([cv])
    cases = [
        GateCase(
            c.diagnosis_ref,
            predicted.get(c.case),
            float(_both_empty_is_one([c.dice[LESION_KEY]])[0]),
            c.lesion_ref_voxels == 0,
        )
        for c in cv.cases
        if c.lesion_ref_voxels is not None and LESION_KEY in c.dice
    ]
    return cases or None


def choose_gate(cases: Sequence[GateCase], classes: Sequence[str]) -> DiagnosisGate | None:
    """The diagnosis gate (``evaluation.diagnosis_gate``) of a candidate's pooled ``cases``;
    None without diagnosis ``classes``, when no class qualifies, or when it does not help."""
    if not classes:
        return None
    choice = choose_diagnosis_gate(cases)
    if not choice.classes:
        logger.info("diagnosis gate: no class whose every case is lesion-free")
        return None
    logger.info(
        "diagnosis gate (empty the mask of cases called %s): %s (mean lesion Dice %.4f -> "
        "%.4f; empties %d case(s), %d of them with lesions)",
        ", ".join(choice.classes),
        "kept" if choice.kept else "did not help",
        choice.dice_before,
        choice.dice_after,
        choice.cases_emptied,
        choice.lesion_cases_emptied,
    )
    if not choice.kept:
        return None
    return DiagnosisGate(
        choice.classes,
        choice.dice_before,
        choice.dice_after,
        choice.cases_emptied,
        choice.lesion_cases_emptied,
    )


def predict_command(work_dir: Path, spec_path: Path) -> str:
    """The ``autojoint_predict`` command that follows ``spec_path``."""
    return f"autojoint_predict -i INPUT_DIR -o OUTPUT_DIR -w {work_dir} --spec {spec_path}"


def find_best_configuration(
    work_dir: Path,
    spec_path: Path,
    *,
    folds: Sequence[str],
    weights: tuple[float, float] = DEFAULT_WEIGHTS,
    use_ensembles: bool = True,
) -> BestConfiguration:
    """Rank the work dir's models and ensembles, choose postprocessing and calibration for
    the best, and write each model's ``calibration.json``.

    Raises:
        FileNotFoundError: no model has a final validation in all ``folds`` (the message
            lists each model's missing folds).
        ValueError: a weight is negative or both are 0.
    """
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"--weights must be >= 0 and not both 0, got {weights}")
    models, incomplete = find_models(work_dir, folds)
    for name, absent in incomplete.items():
        logger.warning("%s: left out, no final validation of fold(s) %s", name, absent)
    if not models:
        listed = "; ".join(f"{n}: folds {', '.join(f)}" for n, f in incomplete.items())
        raise FileNotFoundError(
            f"{work_dir}: no trained model has a final validation (fold_X/validation/"
            f"summary.json) in all folds {', '.join(folds)}; missing: {listed or 'no model'}. "
            "Train the missing folds (autojoint_train -w WORK ... FOLD) or pass --folds."
        )
    scored = [_single(m, cv) for m, cv in models.items()]
    masks_of: dict[tuple[ModelRef, ...], dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    if use_ensembles:
        for a, b in itertools.combinations(models, 2):
            ca, cb = models[a], models[b]
            if a.configuration != b.configuration or not _pair_ok(ca, cb):
                continue
            if not (ca.has_segmentation_files and cb.has_segmentation_files):
                logger.info(
                    "ensemble %s + %s: not scored, train with --save-validation-probabilities",
                    a.name,
                    b.name,
                )
                continue
            masks = _ensemble_masks(work_dir, [ca, cb], a.configuration)
            probs, labels = _mean_probabilities([ca, cb])
            dice = np.array([_lesion_dice(p, r) for p, r in masks.values()]) if masks else None
            scored.append(_Scored((a, b), dice, probs, labels))
            masks_of[(a, b)] = masks
    ranking = rank_candidates(scored, weights)
    best = ranking[0]
    cvs = [models[m] for m in best.members]
    for model in models:  # each model keeps its own temperature for plain --variant use
        if models[model].classes and len(models[model].diagnosed()[2]):
            calibrate_model(variant_dir(work_dir, model.variant, model.configuration), folds)
    temperature = None
    probs, labels = _mean_probabilities(cvs)
    if len(labels):
        temperature = calibration_from_probabilities(
            probs, labels, cvs[0].classes, folds
        ).temperature
    rules: list[PostprocessingRule] = []
    gate = None
    if all(cv.has_segmentation_files for cv in cvs):
        masks = masks_of.get(best.members) or _ensemble_masks(
            work_dir, cvs, best.members[0].configuration
        )
        predicted = _predicted_classes(cvs)
        gate = choose_gate(_gate_cases_from_masks(masks, predicted, cvs), cvs[0].classes)
        if gate is not None:  # the component rules are chosen on the gated masks
            masks = {
                case: (apply_diagnosis_gate(pred, predicted.get(case), gate.classes), ref)
                for case, (pred, ref) in masks.items()
            }
        spacing = _target_spacing(cvs[0])
        rules = choose_postprocessing(
            list(masks.values()), dict(cvs[0].labels), float(np.prod(spacing))
        )
    else:
        logger.info(
            "postprocessing: not chosen, %s has no saved validation probabilities (train with "
            "--save-validation-probabilities)",
            best.name,
        )
        if len(cvs) == 1 and (from_summaries := _gate_cases_from_summaries(cvs[0])):
            gate = choose_gate(from_summaries, cvs[0].classes)
    return BestConfiguration(
        members=best.members,
        folds=tuple(folds),
        checkpoint=FINAL_CHECKPOINT,
        temperature=temperature,
        postprocessing=tuple(rules),
        diagnosis_gate=gate,
        ranking=tuple(ranking),
        weights=weights,
        predict_command=predict_command(work_dir, spec_path),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def _target_spacing(cv: CvPredictions) -> tuple[float, ...]:
    """The grid's spacing (mm) recorded in a validation probabilities file."""
    path = next(c.probabilities_file for c in cv.cases if c.probabilities_file is not None)
    with np.load(path, allow_pickle=False) as npz:
        return tuple(float(s) for s in npz["spacing"])
