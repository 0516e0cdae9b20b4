"""Segmentation losses (per sample, registered by name) and deep supervision with masks.

Registered in ``autojoint.losses.registry``:

- ``dice_ce``: soft Dice + cross-entropy (nnU-Net).
- ``dice_focal``: soft Dice + focal loss (DeepSC-COVID).
- ``focal_tversky``: focal Tversky loss (MultiR-Net).
- ``focal``: multi-class focal loss with per-class weights (MSD-Net).

All are multi-class softmax losses over K channels including background; the region terms
(Dice, Tversky) average the foreground classes, the voxel terms (CE, focal) average all
voxels. Each returns one value per sample so that samples without a mask can be left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F

from autojoint.losses.registry import SegmentationLoss, register_segmentation_loss
from autojoint.networks.fusion import fused_logits
from autojoint.planning.schema import LossOptions

# Floor of the bases raised to a power below 1 ((1 - p_t)^gamma, (1 - TI)^(1/gamma)): keeps
# their gradient finite at a perfect prediction; shifts the value by at most _TINY^power.
_TINY = 1e-12


def _foreground(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Foreground softmax probabilities and one-hot target, both ``(B, K - 1, ...)``."""
    probs = torch.softmax(logits, dim=1)[:, 1:]
    onehot = F.one_hot(target, logits.shape[1]).movedim(-1, 1)[:, 1:].to(probs.dtype)
    return probs, onehot


def _label_weights(
    class_weights: Sequence[float], logits: torch.Tensor, loss_name: str
) -> torch.Tensor | None:
    """One weight per label as a tensor on ``logits``' device, or None when empty (all 1).

    Raises:
        ValueError: not one weight per output channel of ``logits``.
    """
    if not len(class_weights):
        return None
    if len(class_weights) != logits.shape[1]:
        raise ValueError(
            f"{loss_name}: {len(class_weights)} class weights for {logits.shape[1]} classes."
        )
    return logits.new_tensor(list(class_weights))


def soft_dice_per_sample(
    logits: torch.Tensor, target: torch.Tensor, eps: float = 1e-5, *, batch: bool = False
) -> torch.Tensor:
    """1 - mean foreground soft Dice per sample (background excluded, as nnU-Net does).

    ``batch``: one Dice per class over the whole batch (nnU-Net's batch Dice), the same
    value returned for every sample. A per-sample Dice scores a class absent from a patch
    as 0 unless its probability is 0 everywhere, which pushes a rare class (consolidation
    in most patches) towards never being predicted; pooled over the batch, a patch without
    it only adds false positives to the denominator.

    Shape:
        logits ``(B, K, ...)``, target ``(B, ...)`` int64 -> ``(B,)``.
    """
    probs, onehot = _foreground(logits, target)
    dims = tuple(range(2, probs.ndim))
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    if batch:
        inter, denom = inter.sum(0, keepdim=True), denom.sum(0, keepdim=True)
    dice = (2 * inter + eps) / (denom + eps)
    return (1.0 - dice.mean(dim=1)).expand(logits.shape[0])


def dice_ce_per_sample(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    batch_dice: bool = False,
    class_weights: Sequence[float] = (),
) -> torch.Tensor:
    """Soft Dice + voxel-mean cross-entropy, one value per sample. Shape: ``(B,)``.

    ``class_weights`` (one per label, background first; empty = all 1) weigh each voxel's
    cross-entropy by its true label: the planned voxel weights average 1 per voxel, so the
    term keeps the plain cross-entropy's scale while a rare label's voxels count more.
    """
    weight = _label_weights(class_weights, logits, "dice_ce")
    ce = F.cross_entropy(logits, target, weight=weight, reduction="none").flatten(1).mean(dim=1)
    return soft_dice_per_sample(logits, target, batch=batch_dice) + ce


def focal_per_sample(
    logits: torch.Tensor, target: torch.Tensor, alpha: float, gamma: float
) -> torch.Tensor:
    """Voxel-mean focal loss -alpha_t (1 - p_t)^gamma log p_t per sample.

    p_t is the softmax probability of the true class; alpha_t is ``alpha`` on foreground
    voxels (target > 0) and ``1 - alpha`` on background. With gamma = 0 and alpha = 0.5 it
    is half the cross-entropy.

    Shape:
        logits ``(B, K, ...)``, target ``(B, ...)`` int64 -> ``(B,)``.
    """
    log_pt = torch.log_softmax(logits, dim=1).gather(1, target.unsqueeze(1)).squeeze(1)
    modulation = (-torch.expm1(log_pt)).clamp_min(_TINY).pow(gamma)  # (1 - p_t)^gamma
    alpha_t = torch.where(target > 0, log_pt.new_tensor(alpha), log_pt.new_tensor(1.0 - alpha))
    return (-alpha_t * modulation * log_pt).flatten(1).mean(dim=1)


def weighted_focal_per_sample(
    logits: torch.Tensor, target: torch.Tensor, class_weights: Sequence[float], gamma: float
) -> torch.Tensor:
    """Voxel-mean multi-class focal loss -w_t (1 - p_t)^gamma log p_t per sample (MSD-Net).

    w_t is the weight of the voxel's true class; with all weights 1 and gamma = 0 it is the
    cross-entropy. Empty ``class_weights`` means all 1.

    Shape:
        logits ``(B, K, ...)``, target ``(B, ...)`` int64 -> ``(B,)``.
    """
    log_pt = torch.log_softmax(logits, dim=1).gather(1, target.unsqueeze(1)).squeeze(1)
    modulation = (-torch.expm1(log_pt)).clamp_min(_TINY).pow(gamma)
    loss = -modulation * log_pt
    weight = _label_weights(class_weights, logits, "focal loss")
    if weight is not None:
        loss = loss * weight[target]
    return loss.flatten(1).mean(dim=1)


def dice_focal_per_sample(
    logits: torch.Tensor, target: torch.Tensor, alpha: float, gamma: float
) -> torch.Tensor:
    """Soft Dice + focal loss (DeepSC-COVID's L_seg with l_dice = l_focal = 1). ``(B,)``."""
    return soft_dice_per_sample(logits, target) + focal_per_sample(logits, target, alpha, gamma)


def tversky_index(
    logits: torch.Tensor, target: torch.Tensor, alpha: float, beta: float, eps: float = 1e-5
) -> torch.Tensor:
    """Tversky index per sample and foreground class.

    TI = (sum p g + eps) / (sum p g + alpha sum (1 - p) g + beta sum p (1 - g) + eps); alpha
    weighs false negatives, beta false positives. alpha = beta = 0.5 is the soft Dice (up to
    where eps enters).

    Shape:
        logits ``(B, K, ...)``, target ``(B, ...)`` int64 -> ``(B, K - 1)``.
    """
    probs, onehot = _foreground(logits, target)
    dims = tuple(range(2, probs.ndim))
    tp = (probs * onehot).sum(dims)
    fn = ((1.0 - probs) * onehot).sum(dims)
    fp = (probs * (1.0 - onehot)).sum(dims)
    return (tp + eps) / (tp + alpha * fn + beta * fp + eps)


def focal_tversky_per_sample(
    logits: torch.Tensor, target: torch.Tensor, alpha: float, beta: float, gamma: float
) -> torch.Tensor:
    """Focal Tversky loss: mean over foreground classes of (1 - TI)^(1/gamma). ``(B,)``."""
    ti = tversky_index(logits, target, alpha, beta)
    return (1.0 - ti).clamp_min(_TINY).pow(1.0 / gamma).mean(dim=1)


@register_segmentation_loss("dice_ce")
def _dice_ce(options: LossOptions) -> SegmentationLoss:
    if options.weighted_ce and any(w <= 0 for w in options.ce_class_weights):
        raise ValueError(
            f"dice_ce with weighted_ce needs positive ce_class_weights, got "
            f"{list(options.ce_class_weights)}"
        )
    if not options.batch_dice and not options.weighted_ce:
        return dice_ce_per_sample
    return partial(
        dice_ce_per_sample,
        batch_dice=options.batch_dice,
        class_weights=tuple(options.ce_class_weights) if options.weighted_ce else (),
    )


@register_segmentation_loss("dice_focal")
def _dice_focal(options: LossOptions) -> SegmentationLoss:
    if not 0.0 <= options.focal_alpha <= 1.0 or options.focal_gamma < 0.0:
        raise ValueError(
            f"dice_focal needs 0 <= focal_alpha <= 1 and focal_gamma >= 0, got "
            f"focal_alpha={options.focal_alpha}, focal_gamma={options.focal_gamma}"
        )
    return partial(dice_focal_per_sample, alpha=options.focal_alpha, gamma=options.focal_gamma)


@register_segmentation_loss("focal_tversky")
def _focal_tversky(options: LossOptions) -> SegmentationLoss:
    a, b, g = options.tversky_alpha, options.tversky_beta, options.tversky_gamma
    if a < 0.0 or b < 0.0 or a + b <= 0.0 or g <= 0.0:
        raise ValueError(
            "focal_tversky needs tversky_alpha, tversky_beta >= 0 (not both 0) and "
            f"tversky_gamma > 0, got {a}, {b}, {g}"
        )
    return partial(focal_tversky_per_sample, alpha=a, beta=b, gamma=g)


@register_segmentation_loss("focal")
def _focal(options: LossOptions) -> SegmentationLoss:
    if options.focal_gamma < 0.0 or any(w <= 0 for w in options.voxel_class_weights):
        raise ValueError(
            f"focal needs focal_gamma >= 0 and positive voxel_class_weights, got "
            f"focal_gamma={options.focal_gamma}, weights={list(options.voxel_class_weights)}"
        )
    return partial(
        weighted_focal_per_sample,
        class_weights=tuple(options.voxel_class_weights),
        gamma=options.focal_gamma,
    )


def downsample_target(target: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Nearest-neighbour label map at a coarser deep-supervision scale.

    Coarse voxel i takes the fine voxel nearest its centre (``nearest-exact``; at even
    factors the centre falls between two voxels and the later one is taken), the centre the
    fusion's linear upsampling (``align_corners=False``) gives it. PyTorch's plain
    ``nearest`` takes fine voxel f*i instead: a head that met that target exactly was
    shifted (f - 1) / 2 fine voxels in the fused mask (1.5 at f = 4, 3.5 at f = 8), so the
    per-scale and fused loss terms pulled each coarse head towards two different maps.
    """
    if tuple(target.shape[1:]) == tuple(size):
        return target
    small = F.interpolate(target[:, None].float(), size=tuple(size), mode="nearest-exact")
    return small[:, 0].long()


def deep_supervision_loss(
    scale_logits: Sequence[torch.Tensor],
    target: torch.Tensor,
    eta: Sequence[float],
    has_mask: torch.Tensor,
    loss_fn: SegmentationLoss,
    *,
    fusion: str = "softmax",
) -> torch.Tensor:
    """Half on the fused output (what inference uses), half on the eta-weighted scales.

    ``loss_fn`` is the per-sample segmentation loss (from the registry). Samples without a
    mask (``has_mask`` False) are left out of the mean, not scored against an empty mask.
    The fused output is :func:`autojoint.networks.fusion.fused_logits` of ``fusion``
    (the plan's ``network.fusion``): for ``"sigmoid_sum"`` these are log-probabilities,
    which every registered loss (all softmax-based) takes as logits of the fused
    probabilities. Each scale is scored on its own softmax.

    Shape:
        scale_logits finest first ``(B, K, ...)``; target ``(B, ...)``; has_mask ``(B,)`` bool.
    """
    if not bool(has_mask.any()):
        return scale_logits[0].sum() * 0.0
    idx = has_mask.nonzero().flatten()
    logits = [s[idx] for s in scale_logits]
    tgt = target[idx]
    fused = loss_fn(fused_logits(logits, eta, fusion), tgt).mean()
    per_scale = sum(
        w * loss_fn(s, downsample_target(tgt, s.shape[2:])).mean()
        for w, s in zip(eta, logits, strict=True)
    )
    return 0.5 * fused + 0.5 * per_scale
