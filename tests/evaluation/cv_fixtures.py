"""Constructed cross-validation predictions: what a fold's final validation leaves in
``fold_X/validation/`` (summary.json and, if asked, CASE_probabilities.npz), written
without training, with exactly known quality."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from autojoint.evaluation.cv_predictions import (
    validation_probabilities_path,
    write_validation_probabilities,
)
from autojoint.io.files import write_json
from autojoint.io.workdir import fold_dir


def lesion_dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice of any lesion; NaN when both are empty (as summary.json)."""
    p, r = pred > 0, ref > 0
    total = int(p.sum() + r.sum())
    return float("nan") if total == 0 else 2.0 * int((p & r).sum()) / total


def one_hot(mask: np.ndarray, num_labels: int, confidence: float = 0.9) -> np.ndarray:
    """Soft one-hot probabilities ``(K, *mask.shape)`` whose argmax is ``mask``."""
    rest = (1.0 - confidence) / (num_labels - 1)
    probs = np.full((num_labels, *mask.shape), rest, np.float32)
    for k in range(num_labels):
        probs[k][mask == k] = confidence
    return probs


def write_fold(
    work: Path,
    fold: str,
    cases: Sequence[dict],
    labels: Mapping[str, int],
    classes: Sequence[str],
    *,
    variant: str = "default",
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    with_checkpoint: bool = True,
) -> Path:
    """One fold's validation. Each case dict: ``case``, ``diagnosis_ref``, ``diagnosis``
    (probabilities, ``classes`` order) and optionally ``pred``/``ref`` masks (Dice in the
    summary) and ``probs`` (a segmentation softmax file is written)."""
    folder = fold_dir(work, fold, "fullres", variant)
    folder.mkdir(parents=True, exist_ok=True)
    if with_checkpoint and not (folder / "checkpoint_final.pt").exists():
        (folder / "checkpoint_final.pt").write_bytes(b"placeholder")
    entries = []
    for c in cases:
        entry: dict = {
            "case": c["case"],
            "diagnosis_ref": c["diagnosis_ref"],
            "diagnosis_pred": classes[int(np.argmax(c["diagnosis"]))],
            "probabilities": dict(zip(classes, map(float, c["diagnosis"]), strict=True)),
        }
        if "pred" in c:
            entry["metrics"] = {
                "lesion": {
                    "dice": lesion_dice(c["pred"], c["ref"]),
                    "n_ref": int(np.sum(c["ref"] > 0)),
                }
            }
        if "probs" in c:
            write_validation_probabilities(
                validation_probabilities_path(folder, c["case"]),
                c["probs"],
                list(labels),
                spacing,
                np.asarray(c["diagnosis"]),
                classes,
            )
        entries.append(entry)
    summary = {
        "labels": {k: v for k, v in labels.items() if v > 0},
        "metric_per_case": entries,
        "diagnosis": {"classes": list(classes)},
    }
    write_json(summary, folder / "validation" / "summary.json")
    return folder
