"""The model card of a shared model: what it was trained on, what it expects and returns,
how well it did in cross-validation, and what it is for.

Written twice from one :class:`ModelCard`: ``model_card.json`` for tools (key reference in
docs/schemas.md) and ``model_card.md`` for people. Figures come only from files the work
dir already holds (the plan's case counts, the fingerprint, each fold's
``validation/summary.json``), so the card never claims what was not measured: a fold
without a validation summary is listed as such.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from autojoint.fingerprint.schema import Fingerprint
from autojoint.planning.schema import Plan

MODEL_CARD_SCHEMA_VERSION = 1
INTENDED_USE = "research use only, not a medical device"
LIMITATIONS = (
    "Not validated for clinical use; its outputs must not guide the care of a patient.",
    "Trained on the dataset summarised above only: scanners, protocols, populations and "
    "diseases outside it may give wrong masks or diagnoses without warning.",
    "The cross-validation figures are estimates on the training dataset's own folds, not "
    "on an independent test set.",
)


@dataclass(frozen=True)
class ModelCard:
    """``model_card.json`` (docs/schemas.md, "model_card.json").

    Attributes:
        model: variant, configuration, checkpoint, folds and network switches.
        inputs: channels, target spacing, normalisation and crop the model expects.
        outputs: lesion labels and diagnosis classes.
        training_data: case counts of the plan and, with a fingerprint, diagnosis counts and
            the median spacing and shape of the training images.
        cross_validation: per fold, the final validation's mean Dice per label, accuracy and
            macro-AUC (None where not measured); ``mean`` over the folds that have them.
    """

    autojoint_version: str
    created: str
    intended_use: str
    limitations: tuple[str, ...]
    model: dict[str, Any]
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    training_data: dict[str, Any]
    cross_validation: dict[str, Any]
    schema_version: int = MODEL_CARD_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _number(value: Any) -> float | None:
    """A finite float, or None (a metric undefined on a fold is null, not NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def fold_figures(summary: Mapping[str, Any], labels: Mapping[str, int]) -> dict[str, Any]:
    """Headline figures of one fold's ``validation/summary.json`` (the evaluation layout,
    docs/evaluation.md): mean Dice per lesion label and for all lesions, accuracy, macro-AUC
    and the number of validation cases."""
    mean = summary.get("mean") or {}
    names = [n for n, v in labels.items() if v != 0] + ["lesion"]
    dice = {n: _number((mean.get(n) or {}).get("dice")) for n in names if n in mean}
    classification = summary.get("classification") or {}
    diagnosis = summary.get("diagnosis") or {}
    cases = summary.get("metric_per_case")
    return {
        "num_cases": len(cases) if isinstance(cases, list) else None,
        "dice": dice,
        "accuracy": _number(classification.get("accuracy")),
        "macro_auc": _number(diagnosis.get("macro_auc")),
    }


def _mean_figures(folds: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """Mean over the folds of each figure, over the folds where it is defined."""

    def mean(values: list[float | None]) -> float | None:
        kept = [v for v in values if v is not None]
        return sum(kept) / len(kept) if kept else None

    figures = [f for f in folds.values() if f is not None]
    names = sorted({n for f in figures for n in f["dice"]})
    return {
        "dice": {n: mean([f["dice"].get(n) for f in figures]) for n in names},
        "accuracy": mean([f["accuracy"] for f in figures]),
        "macro_auc": mean([f["macro_auc"] for f in figures]),
    }


def build_model_card(
    plan: Plan,
    *,
    fingerprint: Fingerprint | None,
    summaries: Mapping[str, Mapping[str, Any] | None],
    model: Mapping[str, Any],
    autojoint_version: str,
    created: str,
) -> ModelCard:
    """The card of ``plan``'s model.

    Args:
        fingerprint: the work dir's fingerprint, or None when it has none.
        summaries: per exported fold, its ``validation/summary.json`` or None.
        model: variant, configuration, checkpoint and folds (the manifest's).
    """
    training: dict[str, Any] = {"case_counts": dict(plan.case_counts)}
    if fingerprint is not None:
        spacings = sorted(c.spacing for c in fingerprint.cases)
        shapes = sorted(c.shape for c in fingerprint.cases)
        training.update(
            num_cases=len(fingerprint.cases),
            diagnosis_counts=dict(fingerprint.diagnosis_counts),
            median_spacing=list(_median_rows(spacings)),
            median_shape=[int(v) for v in _median_rows(shapes)],
            is_2d=fingerprint.is_2d,
        )
    folds = {
        fold: None if summary is None else fold_figures(summary, plan.labels)
        for fold, summary in summaries.items()
    }
    cross_validation: dict[str, Any] = {"folds": folds}
    if any(f is not None for f in folds.values()):
        cross_validation["mean"] = _mean_figures({k: v for k, v in folds.items() if v})
    return ModelCard(
        autojoint_version=autojoint_version,
        created=created,
        intended_use=INTENDED_USE,
        limitations=LIMITATIONS,
        model={**model, "network": dataclasses.asdict(plan.network)},
        inputs={
            "channel_names": dict(plan.channel_names),
            "target_spacing": list(plan.target_spacing),
            "normalization": [dataclasses.asdict(n) for n in plan.normalization],
            "lung_mask": plan.lung_mask,
            "is_2d": plan.is_2d,
        },
        outputs={"labels": dict(plan.labels), "classes": list(plan.classes)},
        training_data=training,
        cross_validation=cross_validation,
    )


def _median_rows(rows: list[tuple[Any, ...]]) -> tuple[float, ...]:
    """Per-axis median of equal-length rows."""
    if not rows:
        return ()
    out = []
    for axis in range(len(rows[0])):
        values = sorted(float(r[axis]) for r in rows)
        mid = len(values) // 2
        out.append(values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2)
    return tuple(out)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def render_model_card(card: ModelCard) -> str:
    """``model_card.md``: the card for people (the JSON holds the same facts)."""
    m, i, o, t = card.model, card.inputs, card.outputs, card.training_data
    lines = [
        f"# Model card: autojoint {m.get('variant')} ({m.get('configuration')})",
        "",
        f"**Intended use: {card.intended_use}.**",
        "",
        "## Model",
        f"- exported with autojoint {card.autojoint_version} on {card.created}",
        f"- variant `{m.get('variant')}`, configuration `{m.get('configuration')}`, "
        f"checkpoint `{m.get('checkpoint')}`, folds {', '.join(m.get('folds', []))} "
        "(ensembled: mean of probabilities)",
        "",
        "## Inputs",
        f"- channels: {', '.join(f'{k}: {v}' for k, v in i['channel_names'].items())}",
        f"- resampled to {' x '.join(f'{s:g}' for s in i['target_spacing'])} mm (z, y, x)",
        f"- lung mask: {i['lung_mask']}; 2D images: {'yes' if i['is_2d'] else 'no'}",
        "",
        "## Outputs",
        f"- lesion labels: {', '.join(f'{k} = {v}' for k, v in o['labels'].items())}",
        f"- diagnosis classes: {', '.join(o['classes']) or 'none (segmentation only)'}",
        "",
        "## Training data",
    ]
    counts = t.get("case_counts") or {}
    lines += [f"- {k.replace('_', ' ')}: {v}" for k, v in counts.items()]
    if "diagnosis_counts" in t:
        diag = ", ".join(f"{k} {v}" for k, v in t["diagnosis_counts"].items())
        lines.append(f"- diagnoses: {diag or 'none'}")
        spacing = " x ".join(f"{s:g}" for s in t["median_spacing"])
        lines.append(f"- median spacing {spacing} mm, median shape {t['median_shape']} voxels")
    lines += ["", "## Cross-validation (each fold's final validation)", ""]
    folds = card.cross_validation["folds"]
    labels = sorted({n for f in folds.values() if f for n in f["dice"]})
    header = ["fold", "cases", *(f"Dice {n}" for n in labels), "accuracy", "macro-AUC"]
    lines += ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    rows = list(folds.items())
    if "mean" in card.cross_validation:
        rows.append(("mean", {"num_cases": None, **card.cross_validation["mean"]}))
    for fold, f in rows:
        if f is None:
            cells = [fold, "not validated", *[""] * (len(header) - 2)]
        else:
            cells = [
                fold,
                "" if f["num_cases"] is None else str(f["num_cases"]),
                *(_fmt(f["dice"].get(n)) for n in labels),
                _fmt(f["accuracy"]),
                _fmt(f["macro_auc"]),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Limitations", ""] + [f"- {text}" for text in card.limitations]
    return "\n".join(lines) + "\n"
