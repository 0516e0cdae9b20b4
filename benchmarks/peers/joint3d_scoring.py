"""Scoring one fold of workload 2 (:mod:`benchmarks.peers.joint3d`): the two-step
diagnosis on predicted masks, both tools through autojoint's evaluator, training times.

Every function takes its files as arguments; :mod:`joint3d` decides where they live.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from autojoint.evaluation.evaluate import evaluate_folder
from autojoint.evaluation.metrics import diagnosis_scores
from autojoint.io.dataset import RawDataset
from autojoint.io.files import atomic_write, read_json, write_json
from benchmarks.peers.joint3d_features import case_features, fit_predict_proba


def write_diagnoses_csv(path: Path, rows: list[list[str]], header: list[str]) -> None:
    """A predictor-style diagnoses CSV (``header`` then ``rows``), written atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda fh: fh.write(buffer.getvalue()))


def two_step(
    dataset: RawDataset,
    split: dict[str, list[str]],
    reference: dict[str, dict[str, float]],
    pred_dir: Path,
    *,
    peripheral_mm: float,
    csv_path: Path,
    features_path: Path,
) -> dict[str, Any]:
    """The two-step diagnoses of the fold's validation cases from one tool's predicted masks
    (nnU-Net's, or autojoint's for the row that tests our masks against our head).

    The classifier is fitted on the training cases' ``reference`` (reference-mask)
    features and applied to the features of ``pred_dir/CASE.nii.gz``; the diagnoses are
    written to ``csv_path`` as a predictor's ``case,diagnosis,p_<class>`` CSV (what
    ``evaluate_folder`` scores) and the features to ``features_path``.

    Returns:
        The ceiling: ``{"scores": {"accuracy", "macro-AUC"}, "confusion"}`` of the same
        classifier on the validation cases' reference masks.
    """
    classes = list(dataset.classes)
    cases = {c.case_id: c for c in dataset.cases}
    train, val = split["train"], split["val"]
    predicted = {
        c: case_features(
            cases[c].image_paths[0], pred_dir / f"{c}.nii.gz", peripheral_mm=peripheral_mm
        )
        for c in val
    }
    write_json(predicted, features_path)
    train_x = [reference[c] for c in train]
    train_y = [str(cases[c].diagnosis) for c in train]
    probs = fit_predict_proba(train_x, train_y, [predicted[c] for c in val], classes)
    rows = [
        [c, classes[int(np.argmax(p))], *(f"{v:.6f}" for v in p)]
        for c, p in zip(val, probs, strict=True)
    ]
    write_diagnoses_csv(csv_path, rows, ["case", "diagnosis", *(f"p_{k}" for k in classes)])
    ceiling_probs = fit_predict_proba(train_x, train_y, [reference[c] for c in val], classes)
    ceiling = diagnosis_scores(
        [str(cases[c].diagnosis) for c in val],
        [classes[int(np.argmax(p))] for p in ceiling_probs],
        classes,
        ceiling_probs,
    )
    return {
        "scores": {"accuracy": ceiling["accuracy"], "macro-AUC": ceiling["macro_auc"]},
        "confusion": ceiling["confusion_matrix"],
    }


def score(
    pred_dir: Path,
    labels_dir: Path,
    *,
    ref_diagnoses_csv: Path,
    pred_diagnoses_csv: Path,
    dataset: RawDataset,
) -> dict[str, Any]:
    """Segmentation and diagnosis scores of one tool through autojoint's evaluator.

    Returns:
        ``{"scores": {column: value}, "confusion": rows reference, columns predicted}``.
    """
    summary = evaluate_folder(
        pred_dir,
        labels_dir,
        label_values={k: v for k, v in dataset.labels.items() if v > 0},
        ref_diagnoses_csv=ref_diagnoses_csv,
        pred_diagnoses_csv=pred_diagnoses_csv,
        classes=list(dataset.classes),
    )
    mean, dx = summary["mean"], summary["diagnosis"]
    return {
        "scores": {
            "Dice lesion": mean["lesion"]["dice"],
            "Dice GGO": mean["ground_glass"]["dice"],
            "Dice consolidation": mean["consolidation"]["dice"],
            "precision lesion": mean["lesion"]["precision"],
            "recall lesion": mean["lesion"]["sensitivity"],
            "accuracy": dx["accuracy"],
            "macro-AUC": dx["macro_auc"],
        },
        "confusion": dx["confusion_matrix"],
    }


def training_record(
    nnunet_log: Path | None, autojoint_log: Path | None, iterations: int
) -> dict[str, dict[str, Any]]:
    """Per tool given a log: seconds per training iteration (each epoch's wall time, its
    validation batches and checkpoint included, over the training iterations) and learning
    curves.

    Args:
        nnunet_log: the driver's ``train.json``.
        autojoint_log: ``fold_K/training_log.json``.
        iterations: training iterations of the run (epochs x iterations per epoch).
    """
    loss, dice = "train loss (own segmentation loss)", "validation Dice (own online estimate)"
    record: dict[str, dict[str, Any]] = {}
    if nnunet_log is not None:
        nn = read_json(nnunet_log)
        log = nn["log"]  # timestamps live in the checkpoint's log, so they survive a resume
        nn_seconds = sum(
            e - s
            for s, e in zip(
                log["epoch_start_timestamps"], log["epoch_end_timestamps"], strict=False
            )
        )
        record["nnunet"] = {
            "seconds_per_iteration": nn_seconds / iterations,
            "curves": {
                loss: [float(v) for v in log["train_losses"]],
                dice: [float(v) for v in log["mean_fg_dice"]],
            },
        }
    if autojoint_log is not None:
        aj = read_json(autojoint_log)["epochs"]
        record["autojoint"] = {
            "seconds_per_iteration": sum(float(e["seconds"]) for e in aj) / iterations,
            "curves": {
                loss: [float(e["loss_seg"]) for e in aj],
                dice: [float(e["val_view_dice"]) for e in aj],
            },
        }
    return record
