"""Segmentation losses: soft Dice + cross-entropy with deep supervision and per-case masks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from autojoint.networks.joint_net import fuse_scales


def soft_dice_per_sample(
    logits: torch.Tensor, target: torch.Tensor, eps: float = 1e-5
) -> torch.Tensor:
    """1 - mean foreground soft Dice per sample (background excluded, as nnU-Net does).

    Shape:
        logits ``(B, K, ...)``, target ``(B, ...)`` int64 -> ``(B,)``.
    """
    probs = torch.softmax(logits, dim=1)[:, 1:]
    onehot = F.one_hot(target, logits.shape[1]).movedim(-1, 1)[:, 1:].to(probs.dtype)
    dims = tuple(range(2, probs.ndim))
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + eps) / (denom + eps)
    return 1.0 - dice.mean(dim=1)


def dice_ce_per_sample(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Soft Dice + voxel-mean cross-entropy, one value per sample. Shape: ``(B,)``."""
    ce = F.cross_entropy(logits, target, reduction="none").flatten(1).mean(dim=1)
    return soft_dice_per_sample(logits, target) + ce


def downsample_target(target: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Nearest-neighbour label map at a coarser deep-supervision scale."""
    if tuple(target.shape[1:]) == tuple(size):
        return target
    return F.interpolate(target[:, None].float(), size=tuple(size), mode="nearest")[:, 0].long()


def deep_supervision_loss(
    scale_logits: Sequence[torch.Tensor],
    target: torch.Tensor,
    eta: Sequence[float],
    has_mask: torch.Tensor,
) -> torch.Tensor:
    """Half on the fused output (what inference uses), half on the eta-weighted scales.

    Samples without a mask (``has_mask`` False) are left out of the mean, not scored
    against an empty mask.

    Shape:
        scale_logits finest first ``(B, K, ...)``; target ``(B, ...)``; has_mask ``(B,)`` bool.
    """
    if not bool(has_mask.any()):
        return scale_logits[0].sum() * 0.0
    idx = has_mask.nonzero().flatten()
    logits = [s[idx] for s in scale_logits]
    tgt = target[idx]
    fused = dice_ce_per_sample(fuse_scales(logits, eta), tgt).mean()
    per_scale = sum(
        w * dice_ce_per_sample(s, downsample_target(tgt, s.shape[2:])).mean()
        for w, s in zip(eta, logits, strict=True)
    )
    return 0.5 * fused + 0.5 * per_scale
