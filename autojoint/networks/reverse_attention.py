"""Reverse attention on the skip connections (MultiR-Net; docs/methods.md, "References").

Each decoder level multiplies its skip features by ``W = 1 - sigmoid(UP(F_coarser))``, so
the skip carries what the coarser level has not yet explained as lesion (mostly the
boundaries and the missed lesions).

Multi-class heads: the paper's ``F_i`` is a one-channel lesion logit. Our heads emit K
logits (background plus K-1 lesion labels), so the coarser level's lesion map is the
lesion-vs-background logit ``l = logsumexp(z_1..z_{K-1}) - z_0``, for which
``sigmoid(l) = 1 - softmax(z)_0 = P(any lesion)`` exactly (for K = 2 it is ``z_1 - z_0``).
As in the paper the logit map is interpolated first and squashed after:
``W = 1 - sigmoid(UP(l))``, UP = (tri/bi)linear interpolation to the skip's size. ``W`` has
one channel and broadcasts over the skip's channels. It is not detached: the coarser head
also learns from the finer levels through it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from autojoint.networks.blocks import resize


def lesion_logit(logits: torch.Tensor) -> torch.Tensor:
    """One-channel lesion logit of K-class logits, ``(B, K, ...) -> (B, 1, ...)``.

    ``sigmoid`` of it is ``1 - P(background)``; a one-channel input is returned as is.
    """
    if logits.shape[1] == 1:
        return logits
    return torch.logsumexp(logits[:, 1:], dim=1, keepdim=True) - logits[:, :1]


def reverse_attention_weight(coarse_logits: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``W = 1 - sigmoid(UP(lesion_logit(coarse_logits)))`` at ``size``: ``(B, 1, *size)``."""
    return 1.0 - torch.sigmoid(resize(lesion_logit(coarse_logits), size))


def apply_reverse_attention(skip: torch.Tensor, coarse_logits: torch.Tensor) -> torch.Tensor:
    """``R = skip * W`` with ``W`` broadcast over the skip's channels."""
    return skip * reverse_attention_weight(coarse_logits, skip.shape[2:])
