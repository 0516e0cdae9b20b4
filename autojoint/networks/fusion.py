"""Fusing the per-scale logits S_i of the segmentation heads into one map.

Its own module because the network (final mask, the lesion map fed to the classifier), the
segmentation loss (deep supervision on the fused map) and inference all fuse the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from autojoint.planning.schema import FUSIONS


def fuse_scales(scale_logits: Sequence[torch.Tensor], eta: Sequence[float]) -> torch.Tensor:
    """Fused logits sum_i eta_i * UP(S_i); their softmax is the final mask (the
    ``"softmax"`` fusion, docs/methods.md "Segmentation scales and their fusion";
    :func:`fused_logits` serves both fusions).

    Shape:
        scale_logits: finest first, each ``(B, K, ...)``; returns the finest's shape.
    """
    size = scale_logits[0].shape[2:]
    fused = eta[0] * scale_logits[0]
    for w, s in zip(eta[1:], scale_logits[1:], strict=True):
        fused = fused + w * _upsample(s, size)
    return fused


def _upsample(logits: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """UP(S_i): linear interpolation of a coarser scale's logits to ``size``."""
    mode = "trilinear" if logits.ndim == 5 else "bilinear"
    return F.interpolate(logits, size=tuple(size), mode=mode, align_corners=False)


def one_vs_rest_log_odds(logits: torch.Tensor) -> torch.Tensor:
    """Per class k, l_k = z_k - log sum_{j != k} exp(z_j), so sigmoid(l_k) = softmax(z)_k.

    The sigmoid logit of "class k, not the others" that a softmax head implies: unlike the
    raw z_k it does not depend on the softmax's free additive constant. For K = 2 it is
    ``z_1 - z_0`` (the lesion logit of reverse attention) and its negative.

    Shape:
        ``(B, K, ...)`` with K >= 2 -> the same.
    """
    if logits.shape[1] == 2:  # fast path: no (B, K, K, ...) temporary
        return logits - logits.flip(1)
    k = logits.shape[1]
    eye = torch.eye(k, dtype=torch.bool, device=logits.device)
    mask = torch.zeros((k, k), dtype=logits.dtype, device=logits.device)
    mask = mask.masked_fill(eye, float("-inf")).view(1, k, k, *([1] * (logits.ndim - 2)))
    return logits - torch.logsumexp(logits.unsqueeze(1) + mask, dim=2)


def fused_logits(
    scale_logits: Sequence[torch.Tensor], eta: Sequence[float], fusion: str = "softmax"
) -> torch.Tensor:
    """The fused map of the scales S_i (finest first) as logits: its softmax over classes is
    the fused probability (:func:`fused_probabilities`), so softmax-based losses take it.

    ``"softmax"`` (default, DeepSC-COVID's fusion): exactly :func:`fuse_scales`.

    ``"sigmoid_sum"`` (MultiR-Net's sum of per-scale sigmoids, F = sum_i
    sigmoid(eta_i * UP(F_i)) with F_i a one-channel lesion logit, read per class of a
    softmax head): with N scales and l_ik the one-vs-rest log-odds of class k in
    UP(S_i) (:func:`one_vs_rest_log_odds`),

        F_k = sum_i sigmoid(N * eta_i * l_ik)  in [0, N],    p_k = F_k / sum_j F_j,

    background included. The factor N makes the plan's eta (which sum to 1) relative
    weights around 1 as in the paper: equal eta give sigmoid(l_ik) = softmax(UP(S_i))_k,
    and p is the mean of the scales' softmax probabilities. For K = 2 the two F sum to N,
    so p_1 = F_1 / N is MultiR-Net's F divided by N. Returned as log p (finite, computed in
    the log domain): softmax(log p) = p.

    Raises:
        ValueError: unknown ``fusion``.

    Shape:
        scale_logits: finest first, each ``(B, K, ...)``; returns the finest's shape.
    """
    if fusion == "softmax":
        return fuse_scales(scale_logits, eta)
    if fusion != "sigmoid_sum":
        raise ValueError(f"unknown fusion {fusion!r}; choose one of {FUSIONS}.")
    n = len(scale_logits)
    size = scale_logits[0].shape[2:]
    log_f: torch.Tensor | None = None  # log F_k, accumulated scale by scale
    for i, (w, s) in enumerate(zip(eta, scale_logits, strict=True)):
        up = s if i == 0 else _upsample(s, size)
        term = F.logsigmoid((n * w) * one_vs_rest_log_odds(up))
        log_f = term if log_f is None else torch.logaddexp(log_f, term)
    assert log_f is not None
    return log_f - torch.logsumexp(log_f, dim=1, keepdim=True)


def fused_probabilities(
    scale_logits: Sequence[torch.Tensor], eta: Sequence[float], fusion: str = "softmax"
) -> torch.Tensor:
    """Per-class probabilities of the fused map (see :func:`fused_logits`): what the
    predictor, validation and the lesion map fed to the classifier use.

    Shape:
        scale_logits: finest first, each ``(B, K, ...)``; returns ``(B, K, ...)`` of the
        finest scale, summing to 1 over K.
    """
    return torch.softmax(fused_logits(scale_logits, eta, fusion), dim=1)
