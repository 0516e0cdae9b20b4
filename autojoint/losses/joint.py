"""Diagnosis loss, task-aware loss and the total loss with L_seg.

The formulas, their ranges and the reasons for the defaults are in docs/methods.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from autojoint.data.batch import TensorBatch
from autojoint.losses.registry import get_segmentation_loss
from autojoint.losses.segmentation import deep_supervision_loss
from autojoint.networks.joint_net import JointNet, JointOutput
from autojoint.planning.schema import TASK_AWARE_GRADIENTS, LossOptions, LossWeights

# Weight of the whole-scan view's segmentation loss relative to the patch's: the view is
# coarse, so it should help, not dominate, the full-resolution masks.
VIEW_SEG_WEIGHT = 0.5


def diagnosis_loss(
    logits: torch.Tensor, target: torch.Tensor, class_weights: torch.Tensor
) -> torch.Tensor:
    """Diagnosis loss: cross-entropy weighted by inverse class frequency; target -1 = no
    diagnosis (docs/methods.md, "The classifier and the diagnosis loss").

    A per-sample weighted *mean*: sum_i w_{y_i} CE_i / n over the n samples with a
    diagnosis. ``F.cross_entropy(weight=...)`` divides by sum_i w_{y_i} instead, which
    cancels the weights whenever the batch's samples share a class (always at batch 1, half
    the time at batch 2): the rare class would never weigh more.

    Shape:
        logits ``(B, C)``, target ``(B,)`` int64.
    """
    known = target >= 0
    if not bool(known.any()):
        return logits.sum() * 0.0
    y = target[known]
    ce = F.cross_entropy(logits[known], y, reduction="none")
    return (class_weights[y] * ce).mean()


_EVIDENCE_EPS = 1e-6


def normalised_evidence(maps: torch.Tensor) -> torch.Tensor:
    """Evidence in [0, 1] per sample: ReLU, then divided by the sample's maximum.

    "No evidence" (a CAM at or below 0) is 0, the strongest evidence 1. The raw class
    activation map is unbounded and signed; squashing it with a sigmoid (the first version
    of the task-aware loss) put
    "no evidence" at 0.5, so "half lesion everywhere" was a perfect score.

    Shape:
        ``(B, 1, ...)`` -> same.
    """
    v = torch.relu(maps)
    peak = v.flatten(1).amax(dim=1).view(-1, *([1] * (v.ndim - 1)))
    return v / (peak + _EVIDENCE_EPS)


def task_aware_loss(
    view_scales: Sequence[torch.Tensor],
    evidence: Sequence[torch.Tensor],
    eta: Sequence[float],
    gradient: str = "evidence",
) -> torch.Tensor:
    """Task-aware loss: sum_i eta_i * mean ||S_i - V_i||^2 over the classifier's evidence
    scales (docs/methods.md, "The task-aware loss").

    S_i is the lesion probability (1 - P(background)) of view scale i (i = 1..3, the scales
    matching the classification units' 1/2, 1/4, 1/8 resolutions); V_i the evidence map of
    unit i resized to S_i and normalised by :func:`normalised_evidence`, so both live in
    [0, 1] with 0 meaning "nothing here". ``gradient`` (``TASK_AWARE_GRADIENTS``) says which
    side learns. Mean over the voxels and samples given; the caller picks the samples.
    """
    if gradient not in TASK_AWARE_GRADIENTS:
        raise ValueError(
            f"task-aware gradient must be one of {TASK_AWARE_GRADIENTS}, got {gradient!r}"
        )
    total = view_scales[0].sum() * 0.0
    n = min(len(evidence), len(view_scales) - 1)
    for i in range(n):
        s = 1.0 - torch.softmax(view_scales[i + 1], dim=1)[:, :1]
        mode = "trilinear" if s.ndim == 5 else "bilinear"
        v = normalised_evidence(
            F.interpolate(evidence[i], size=s.shape[2:], mode=mode, align_corners=False)
        )
        if gradient == "evidence":
            s = s.detach()
        elif gradient == "segmentation":
            v = v.detach()
        total = total + eta[i + 1] * ((s - v) ** 2).mean()
    return total


def evidence_targets(batch: TensorBatch) -> torch.Tensor:
    """Samples that get an evidence target in the task-aware loss: a reference diagnosis, a
    mask, and a lesion in the view's mask. Normal scans (no lesion: there is nothing for
    the evidence to agree with) and scans without a diagnosis or mask get none.

    Shape:
        -> ``(B,)`` bool.
    """
    lesion = (batch["cls_seg"] > 0).flatten(1).any(dim=1)
    return (batch["diagnosis"] >= 0) & batch["has_mask"] & lesion


@dataclass(frozen=True)
class LossParts:
    """Each term of the total loss, kept apart for logging."""

    total: torch.Tensor
    seg: torch.Tensor
    cls: torch.Tensor
    task_aware: torch.Tensor


def joint_loss(
    net: JointNet,
    out: JointOutput,
    batch: TensorBatch,
    weights: LossWeights,
    class_weights: torch.Tensor,
    options: LossOptions,
) -> LossParts:
    """Total loss L = l_seg * L_seg + l_cls * L_cls + l_ta * L_ta, with per-case masking
    (docs/methods.md, "The total loss").

    L_seg is the segmentation loss named by ``options.segmentation`` (built through the
    registry; building it is a dict lookup), with deep supervision, on the patch (``eta``)
    and (x ``VIEW_SEG_WEIGHT``) on the whole-scan view (``view_eta``). L_ta compares the
    view's scales with the evidence of the reference diagnosis of each sample that
    :func:`evidence_targets` keeps.
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
            out.view_scales,
            batch["cls_seg"],
            net.view_eta,
            batch["has_mask"],
            seg_loss,
            fusion=fusion,
        )
        cls = diagnosis_loss(out.class_logits, batch["diagnosis"], class_weights)
        keep = evidence_targets(batch)
        if weights.task_aware > 0 and out.class_features is not None and bool(keep.any()):
            # The evidence of the reference diagnosis, not of the (possibly wrong) prediction.
            idx = keep.nonzero().flatten()
            feats = [f[idx] for f in out.class_features]
            evidence = net.cls.evidence_maps(feats, batch["diagnosis"][idx])
            scales = [s[idx] for s in out.view_scales]
            ta = task_aware_loss(scales, evidence, net.view_eta, options.task_aware_gradient)
    total = weights.seg * seg + weights.cls * cls + weights.task_aware * ta
    return LossParts(total, seg.detach(), cls.detach(), ta.detach())
