"""The cheap validation after every epoch, which picks ``checkpoint_best.pt``.

Two parts: the total loss (docs/methods.md) on fixed un-augmented validation patches
(step.validation_loss) and scores on the whole-scan views. Full-resolution scores come from
the final validation (training/validation.py) and from autojoint_predict +
autojoint_evaluate.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from autojoint.networks.fusion import fused_logits
from autojoint.networks.joint_net import JointNet
from autojoint.planning.schema import Plan
from autojoint.preprocessing.preprocess import load_preprocessed
from autojoint.runtime.devices import subnormals_flushed


@torch.no_grad()
@subnormals_flushed()
def validate_views(
    net: JointNet, plan: Plan, pre_dir: Path, case_ids: list[str], device: torch.device
) -> dict[str, float]:
    """Diagnosis accuracy (``val_accuracy``) and lesion Dice (``val_view_dice``: union of
    lesion labels, pooled over cases) on the whole-scan views; only the views are read."""
    if not case_ids:
        return {}
    net.eval()
    correct = counted = 0
    inter = denom = 0.0
    for c in case_ids:
        if net.cls is None:
            continue
        case = load_preprocessed(pre_dir, c, mmap_mode="r")  # only the views are read
        view = torch.from_numpy(np.array(case.cls_data[None], np.float32)).to(device)
        ref = np.asarray(case.cls_seg) if case.cls_seg is not None else None
        diag = case.diagnosis
        scales, logits, _ = net.classify(view)
        if diag in plan.classes:
            counted += 1
            correct += int(plan.classes[int(logits.argmax())] == diag)
        if ref is not None:
            fused = fused_logits(scales, net.view_eta, net.options.fusion)
            pred = fused.argmax(1)[0].cpu().numpy() > 0
            inter += float(np.logical_and(pred, ref > 0).sum())
            denom += float(pred.sum() + (ref > 0).sum())
    net.train()
    out: dict[str, float] = {}
    if counted:
        out["val_accuracy"] = correct / counted
    if denom:
        out["val_view_dice"] = 2 * inter / denom
    return out
