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

from autojoint.evaluation.metrics import classification_scores, segmentation_scores
from autojoint.inference.sliding_window import network_probabilities
from autojoint.io.files import write_json
from autojoint.networks.joint_net import JointNet
from autojoint.planning.schema import Plan
from autojoint.preprocessing.preprocess import load_preprocessed

logger = logging.getLogger(__name__)


@torch.no_grad()
def validate_cases(
    net: JointNet, plan: Plan, pre_dir: Path, case_ids: list[str], device: torch.device
) -> dict:
    """Dice per lesion label (and all lesions) and diagnosis scores over ``case_ids``.

    Returns:
        ``{"per_case": [...], "mean": {label: {"dice", "num_cases_defined"}},
        "classification": {...} or None, "num_cases": N}``.
    """
    net.eval()
    labels = {k: v for k, v in plan.labels.items() if v > 0}
    per_case, y_true, y_pred = [], [], []
    for case_id in tqdm(case_ids, desc="validation", unit="case", leave=False):
        case = load_preprocessed(pre_dir, case_id)
        view = torch.from_numpy(case["cls_data"][None]).to(device) if plan.has_diagnosis else None
        context = view if plan.network.cross_stitch else None
        entry: dict = {"case": case_id}
        if "seg" in case:
            probs = network_probabilities(
                net,
                case["data"],
                plan.patch_size,
                plan.num_seg_classes,
                context=context,
                device=device,
            )
            pred = np.argmax(probs, axis=0).astype(np.uint8)
            entry["segmentation"] = segmentation_scores(pred, case["seg"], labels)
        diagnosis = case["properties"]["diagnosis"]
        if view is not None and diagnosis in plan.classes:
            _, logits, _ = net.classify(view)
            predicted = plan.classes[int(logits.argmax())]
            entry.update(diagnosis_ref=diagnosis, diagnosis_pred=predicted)
            y_true.append(diagnosis)
            y_pred.append(predicted)
        per_case.append(entry)
    net.train()
    mean = {}
    for name in [*labels, "lesion"]:
        values = [e["segmentation"][name]["dice"] for e in per_case if "segmentation" in e]
        defined = [v for v in values if np.isfinite(v)]
        mean[name] = {
            "dice": float(np.mean(defined)) if defined else float("nan"),
            "num_cases_defined": len(defined),
        }
    return {
        "per_case": per_case,
        "mean": mean,
        "classification": classification_scores(y_true, y_pred, list(plan.classes))
        if y_true
        else None,
        "num_cases": len(case_ids),
    }


def write_validation(summary: dict, fold_dir: Path) -> Path:
    """``fold_X/validation/summary.json`` (strict JSON, atomic)."""
    path = fold_dir / "validation" / "summary.json"
    write_json(summary, path)
    lesion = summary["mean"]["lesion"]["dice"]
    acc = (summary["classification"] or {}).get("accuracy", float("nan"))
    logger.info("validation: lesion Dice %.4f, diagnosis accuracy %.4f -> %s", lesion, acc, path)
    return path
