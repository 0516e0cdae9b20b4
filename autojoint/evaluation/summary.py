"""Assemble ``summary.json`` from per-case scores: one layout for ``autojoint_evaluate`` and
the trainer's final validation, so both report the same metrics under the same keys.

Layout (documented key by key in ``docs/evaluation.md``)::

    {"num_cases", "labels", "label_groups", "tolerance_mm",
     "metric_per_case": [{"case", "metrics": {label: {...}}, "diagnosis_ref",
                          "diagnosis_pred", "probabilities", ...}],
     "mean": {label: {metric: mean, "num_cases_defined", "num_defined": {metric: n}}},
     "volume_agreement": {label: {"bias_ml", "sd_ml", "loa_low_ml", "loa_high_ml", "num_cases"}},
     "diagnosis": {...} or null,
     "per_case": [...], "classification": {...} or null}   # kept for older readers

``per_case`` and ``classification`` are the keys of the first release, kept so that readers
written against it keep working; ``metric_per_case`` and ``diagnosis`` hold everything.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from autojoint.evaluation.metrics import LESION_KEY, SEGMENTATION_METRICS, diagnosis_scores

LEGACY_CASE_KEYS = ("dice", "tp", "fp", "fn", "n_ref", "n_pred")
"""Keys of the first release's ``per_case[i]["segmentation"][label]`` blocks."""

LABEL_GROUPS = {LESION_KEY: "every non-zero label (any lesion)"}


def mean_per_label(entries: Sequence[Mapping], names: Sequence[str]) -> dict[str, dict]:
    """Mean of every metric per label over the cases where it is defined (NaN excluded).

    ``num_cases_defined`` counts the cases with a defined Dice (the first release's key);
    ``num_defined`` gives the count for every metric, since e.g. HD95 is undefined on more
    cases (any empty mask) than Dice (both empty).
    """
    out: dict[str, dict] = {}
    for name in names:
        blocks = [e["metrics"][name] for e in entries if name in e.get("metrics", {})]
        mean: dict = {}
        counts: dict[str, int] = {}
        for metric in SEGMENTATION_METRICS:
            values = [float(b[metric]) for b in blocks if metric in b]
            if not values and metric != "dice":  # Dice is always reported, NaN if undefined
                continue
            defined = [v for v in values if math.isfinite(v)]
            mean[metric] = float(np.mean(defined)) if defined else math.nan
            counts[metric] = len(defined)
        mean["num_cases_defined"] = counts.get("dice", 0)
        mean["num_defined"] = counts
        out[name] = mean
    return out


def volume_agreement(entries: Sequence[Mapping], name: str) -> dict | None:
    """Bland–Altman statistics of predicted minus reference volume (ml) of label ``name``.

    Returns:
        ``{"bias_ml", "sd_ml", "loa_low_ml", "loa_high_ml", "num_cases"}`` (limits of
        agreement = bias ± 1.96 SD, SD with ``ddof=1``), or None when fewer than two cases
        carry volumes (an SD needs two).
    """
    pairs = [
        (e["metrics"][name]["volume_pred_ml"], e["metrics"][name]["volume_ref_ml"])
        for e in entries
        if "volume_pred_ml" in e.get("metrics", {}).get(name, {})
    ]
    if len(pairs) < 2:
        return None
    diff = np.array([p - r for p, r in pairs], dtype=np.float64)
    bias, sd = float(diff.mean()), float(diff.std(ddof=1))
    return {
        "bias_ml": bias,
        "sd_ml": sd,
        "loa_low_ml": bias - 1.96 * sd,
        "loa_high_ml": bias + 1.96 * sd,
        "num_cases": len(pairs),
    }


def _legacy_case(entry: Mapping) -> dict:
    out: dict = {"case": entry["case"]}
    if "metrics" in entry:
        out["segmentation"] = {
            name: {k: block[k] for k in LEGACY_CASE_KEYS if k in block}
            for name, block in entry["metrics"].items()
        }
    for key in ("diagnosis_ref", "diagnosis_pred"):
        if key in entry:
            out[key] = entry[key]
    return out


def score_diagnoses(entries: Sequence[Mapping], classes: Sequence[str]) -> dict | None:
    """The ``diagnosis`` block from the entries that carry a reference and a predicted class.

    AUC and ROC need ``probabilities`` (``{class: p}``) on every one of those entries.
    """
    scored = [e for e in entries if e.get("diagnosis_ref") is not None]
    if not scored or not classes:
        return None
    y_true = [str(e["diagnosis_ref"]) for e in scored]
    y_pred = [str(e["diagnosis_pred"]) for e in scored]
    probs = None
    if all(e.get("probabilities") for e in scored):
        probs = np.array([[float(e["probabilities"][c]) for c in classes] for e in scored])
    return diagnosis_scores(y_true, y_pred, list(classes), probs)


def build_summary(
    entries: list[dict],
    label_values: Mapping[str, int],
    *,
    tolerance_mm: float,
    diagnosis: dict | None,
) -> dict:
    """The summary dict (floats may be NaN; write it with ``write_json``, which nulls them).

    Args:
        entries: one dict per case with ``"case"`` and, when the case was segmented,
            ``"metrics"`` (:func:`segmentation_scores` output); optional diagnosis keys.
        label_values: name -> value of the scored labels (``lesion`` is added).
        tolerance_mm: the NSD/ASO tolerance used, recorded for the reader.
        diagnosis: :func:`score_diagnoses` output or None.
    """
    names = [*label_values, LESION_KEY]
    classification = None
    if diagnosis is not None:
        classification = {k: v for k, v in diagnosis.items() if k not in ("roc", "macro_auc")}
    agreement = {name: volume_agreement(entries, name) for name in names}
    return {
        "num_cases": len(entries),
        "labels": {k: int(v) for k, v in label_values.items()},
        "label_groups": dict(LABEL_GROUPS),
        "tolerance_mm": float(tolerance_mm),
        "metric_per_case": entries,
        "mean": mean_per_label(entries, names),
        "volume_agreement": agreement,
        "diagnosis": diagnosis,
        "per_case": [_legacy_case(e) for e in entries],
        "classification": classification,
    }
