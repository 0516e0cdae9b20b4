"""Full-case validation after training: sliding window over every validation case.

Scored in the preprocessed space (target spacing, body crop, plan axis order), where the
reference masks already are, so it needs no raw data. ``autojoint_predict`` +
``autojoint_evaluate`` give the same scores on the original grids.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from autojoint.evaluation.evaluate import write_report
from autojoint.evaluation.metrics import segmentation_scores
from autojoint.evaluation.summary import build_summary, score_diagnoses
from autojoint.inference.sliding_window import network_probabilities
from autojoint.networks.joint_net import JointNet
from autojoint.planning.schema import Plan
from autojoint.preprocessing.preprocess import load_preprocessed

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
) -> dict:
    """Every segmentation and diagnosis metric of ``autojoint_evaluate`` over ``case_ids``.

    Segmentation is scored at the plan's target spacing (the preprocessed grid), so surface
    distances and volumes are in mm and ml as on the raw grid, up to resampling.

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
        view = torch.from_numpy(case.cls_data[None]).to(device) if plan.has_diagnosis else None
        context = view if plan.network.cross_stitch else None
        entry: dict = {"case": case_id}
        if case.seg is not None:
            probs = network_probabilities(
                net,
                case.data,
                plan.patch_size,
                plan.num_seg_classes,
                context=context,
                device=device,
            )
            pred = np.argmax(probs, axis=0).astype(np.uint8)
            entry["spacing"] = [float(s) for s in plan.target_spacing]
            entry["metrics"] = segmentation_scores(
                pred, case.seg, labels, spacing=plan.target_spacing, tolerance_mm=tolerance_mm
            )
        diagnosis = case.diagnosis
        if view is not None and diagnosis in plan.classes:
            _, logits, _ = net.classify(view)
            p = torch.softmax(logits.float(), dim=1)[0].cpu().numpy()
            entry.update(
                diagnosis_ref=diagnosis,
                diagnosis_pred=plan.classes[int(p.argmax())],
                probabilities=dict(zip(plan.classes, p.tolist(), strict=True)),
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
