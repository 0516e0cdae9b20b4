"""Diagnosis loss (eq. 9), task-aware loss (eq. 10) and their sum with L_seg (eq. 11)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from autojoint.losses.registry import get_segmentation_loss
from autojoint.losses.segmentation import deep_supervision_loss
from autojoint.networks.joint_net import JointNet, JointOutput
from autojoint.planning.schema import LossOptions, LossWeights

# Weight of the whole-scan view's segmentation loss relative to the patch's: the view is
# coarse, so it should help, not dominate, the full-resolution masks.
VIEW_SEG_WEIGHT = 0.5


def diagnosis_loss(
    logits: torch.Tensor, target: torch.Tensor, class_weights: torch.Tensor
) -> torch.Tensor:
    """Eq. 9: cross-entropy weighted by inverse class frequency; target -1 = no diagnosis.

    Shape:
        logits ``(B, C)``, target ``(B,)`` int64.
    """
    if not bool((target >= 0).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, target, weight=class_weights, ignore_index=-1)


def task_aware_loss(
    view_scales: Sequence[torch.Tensor], evidence: Sequence[torch.Tensor], eta: Sequence[float]
) -> torch.Tensor:
    """Eq. 10: sum_i eta_i * ||S_i - V_i||^2 over the classifier's evidence scales.

    S_i is the lesion probability (1 - P(background)) of view scale i (i = 1..3, the scales
    matching the classification units' 1/2, 1/4, 1/8 resolutions); V_i the evidence map of
    unit i, squashed by a sigmoid so both live in [0, 1], resized to S_i. Mean over voxels.
    """
    total = view_scales[0].sum() * 0.0
    n = min(len(evidence), len(view_scales) - 1)
    for i in range(n):
        s = 1.0 - torch.softmax(view_scales[i + 1], dim=1)[:, :1]
        mode = "trilinear" if s.ndim == 5 else "bilinear"
        v = torch.sigmoid(
            F.interpolate(evidence[i], size=s.shape[2:], mode=mode, align_corners=False)
        )
        total = total + eta[i + 1] * ((s - v) ** 2).mean()
    return total


@dataclass(frozen=True)
class LossParts:
    """Each term of eq. 11, kept apart for logging."""

    total: torch.Tensor
    seg: torch.Tensor
    cls: torch.Tensor
    task_aware: torch.Tensor


def joint_loss(
    net: JointNet,
    out: JointOutput,
    batch: dict[str, torch.Tensor],
    weights: LossWeights,
    class_weights: torch.Tensor,
    options: LossOptions,
) -> LossParts:
    """Eq. 11: L = l_seg * L_seg + l_cls * L_cls + l_ta * L_ta, with per-case masking.

    L_seg is the segmentation loss named by ``options.segmentation`` (built through the
    registry; building it is a dict lookup), with deep supervision, on the patch and
    (x ``VIEW_SEG_WEIGHT``) on the whole-scan view.
    """
    eta, fusion = net.eta, net.options.fusion
    seg_loss = get_segmentation_loss(options.segmentation, options)
    seg = deep_supervision_loss(
        out.patch_scales, batch["seg"], eta, batch["has_mask"], seg_loss, fusion=fusion
    )
    zero = seg * 0.0
    cls, ta = zero, zero
    if out.view_scales is not None and out.class_logits is not None and net.cls is not None:
        seg = seg + VIEW_SEG_WEIGHT * deep_supervision_loss(
            out.view_scales, batch["cls_seg"], eta, batch["has_mask"], seg_loss, fusion=fusion
        )
        cls = diagnosis_loss(out.class_logits, batch["diagnosis"], class_weights)
        if weights.task_aware > 0 and out.class_features is not None:
            pred = out.class_logits.argmax(dim=1)
            evidence = net.cls.evidence_maps(out.class_features, pred)
            ta = task_aware_loss(out.view_scales, evidence, eta)
    total = weights.seg * seg + weights.cls * cls + weights.task_aware * ta
    return LossParts(total, seg.detach(), cls.detach(), ta.detach())
