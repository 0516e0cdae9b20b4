"""Full-case validation after training: sliding window over every validation case.

The networks run through the predictor's engine (:func:`autojoint.inference.engine.
run_networks`): the same tiling, tile batch and, by default, the same mirroring test-time
augmentation as ``autojoint_predict``. Scored in the preprocessed space (target spacing, body
crop, plan axis order), where the reference masks already are, so it needs no raw data.
``autojoint_predict`` + ``autojoint_evaluate`` give the same scores on the original grids,
up to resampling.

With ``probabilities_to`` (``--save-validation-probabilities``) each case's segmentation
softmax and diagnosis probabilities are also kept, on the preprocessed grid
(``evaluation.cv_predictions``), for calibration, ensembling and postprocessing choices.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from autojoint.arrays.labels import label_argmax
from autojoint.evaluation.cv_predictions import (
    validation_probabilities_path,
    write_validation_probabilities,
)
from autojoint.evaluation.evaluate import write_report
from autojoint.evaluation.metrics import segmentation_scores
from autojoint.evaluation.summary import build_summary, score_diagnoses
from autojoint.inference.engine import run_networks
from autojoint.networks.joint_net import JointNet
from autojoint.planning.schema import Plan
from autojoint.preprocessing.preprocess import load_preprocessed
from autojoint.runtime.checkpoint import DEFAULT_MIRROR_AXES

logger = logging.getLogger(__name__)


@torch.no_grad()
def validate_cases(
    net: JointNet,
    plan: Plan,
    pre_dir: Path,
    case_ids: list[str],
    device: torch.device,
    *,
    tolerance_mm: float = 1.0,
    mirror_axes: Sequence[int] = DEFAULT_MIRROR_AXES,
    probabilities_to: Path | None = None,
) -> dict:
    """Every segmentation and diagnosis metric of ``autojoint_evaluate`` over ``case_ids``.

    Segmentation is scored at the plan's target spacing (the preprocessed grid), so surface
    distances and volumes are in mm and ml as on the raw grid, up to resampling.

    Args:
        mirror_axes: spatial axes to mirror for test-time augmentation, as the predictor
            does by default: the axes the training mirrored (the trainer passes its
            augmentation's); ``()`` predicts without mirroring (2^axes times faster).
        probabilities_to: a fold folder: also write each case's probabilities to
            ``fold_X/validation/CASE_probabilities.npz`` (None: not kept).

    Returns:
        The summary of :func:`autojoint.evaluation.summary.build_summary`:
        ``metric_per_case``, ``mean`` (Dice, NSD, HD95, ... per label), ``diagnosis``
        (accuracy, per-class scores, AUC, macro-AUC) and the first release's ``per_case``,
        ``classification`` and ``num_cases``.
    """
    net.eval()
    labels = {k: v for k, v in plan.labels.items() if v > 0}
    entries: list[dict] = []
    for case_id in tqdm(case_ids, desc="validation", unit="case", leave=False):
        case = load_preprocessed(pre_dir, case_id)
        out = run_networks(
            [net],
            case,
            plan,
            device,
            mirror_axes=[mirror_axes],
            tile_batch=plan.batch_size,  # the predictor's default
            segment=case.seg is not None,
        )
        entry: dict = {"case": case_id}
        if out.segmentation is not None and case.seg is not None:
            pred = label_argmax(out.segmentation)
            entry["spacing"] = [float(s) for s in plan.target_spacing]
            entry["metrics"] = segmentation_scores(
                pred, case.seg, labels, spacing=plan.target_spacing, tolerance_mm=tolerance_mm
            )
        diagnosis = case.diagnosis
        if out.diagnosis is not None and diagnosis in plan.classes:
            p = out.diagnosis[0]
            entry.update(
                diagnosis_ref=diagnosis,
                diagnosis_pred=plan.classes[int(p.argmax())],
                probabilities=dict(zip(plan.classes, p.tolist(), strict=True)),
            )
        if probabilities_to is not None and out.segmentation is not None:
            write_validation_probabilities(
                validation_probabilities_path(probabilities_to, case_id),
                out.segmentation,
                [k for k, _ in sorted(plan.labels.items(), key=lambda kv: kv[1])],
                plan.target_spacing,
                None if out.diagnosis is None else out.diagnosis[0],
                plan.classes,
            )
        entries.append(entry)
    net.train()
    return build_summary(
        entries,
        labels,
        tolerance_mm=tolerance_mm,
        diagnosis=score_diagnoses(entries, plan.classes),
    )


def write_validation(summary: dict, fold_dir: Path) -> Path:
    """``fold_X/validation/summary.json`` (strict JSON, atomic) and its figures beside it."""
    path = fold_dir / "validation" / "summary.json"
    write_report(summary, path)
    lesion = summary["mean"]["lesion"]
    dx = summary["diagnosis"] or {}
    logger.info(
        "validation: lesion Dice %.4f, NSD %.4f, diagnosis accuracy %.4f, macro-AUC %.4f -> %s",
        lesion.get("dice", float("nan")),
        lesion.get("nsd", float("nan")),
        dx.get("accuracy", float("nan")),
        dx.get("macro_auc", float("nan")),
        path,
    )
    return path
