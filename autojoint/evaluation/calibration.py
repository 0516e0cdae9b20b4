"""Calibration of diagnosis probabilities: temperature scaling, expected calibration error,
Brier score and the reliability diagram's bins.

Temperature scaling (Guo et al. 2017) divides the logits by one scalar T > 0 fitted by
minimising the negative log-likelihood on held-out predictions: it changes how confident
the model is, never which class it picks, so accuracy and AUC stay as they are. Only
probabilities are stored (``summary.json``, ``diagnoses.csv``); ``log p`` differs from the
logits by a per-case constant, which softmax ignores, so ``softmax(log p / T)`` is the
temperature-scaled prediction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar

# Top-label ECE: the confidence range [0, 1] in this many equal-width bins.
DEFAULT_NUM_BINS = 10
# Probabilities are clipped before the log so a stored 0 stays finite (float32 resolution).
_EPS = 1e-7
# T is searched in [1/100, 100] (log scale): far beyond any useful correction.
_LOG_T_BOUND = math.log(100.0)


def _check(probs_or_logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(probs_or_logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if x.ndim != 2 or y.shape != (x.shape[0],) or x.shape[0] == 0:
        raise ValueError(
            f"expected (N, C) scores and N labels with N > 0, got {x.shape} and {y.shape}"
        )
    if np.any(y < 0) or np.any(y >= x.shape[1]):
        raise ValueError(f"labels must be class indices in [0, {x.shape[1]})")
    return x, y


def log_probabilities(probs: np.ndarray) -> np.ndarray:
    """``log p`` (clipped at 1e-7): logits up to a per-case constant.

    Shape:
        ``(N, C)`` -> ``(N, C)``.
    """
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), _EPS, 1.0))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``softmax(logits / temperature)`` over the last axis (stable: max subtracted)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Temperature-scaled probabilities ``softmax(log p / T)``; T = 1 returns ``p`` (up to
    the clipping of zeros).

    Shape:
        ``(N, C)`` or ``(C,)`` -> same.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return softmax(log_probabilities(probs), temperature)


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean ``-log softmax(logits / T)[label]`` over the cases."""
    x, y = _check(logits, labels)
    z = x / temperature
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(y)), y].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T > 0 minimising the mean NLL of ``softmax(logits / T)``.

    The NLL is convex in 1/T, so a bounded scalar search over log T finds the optimum;
    the bound [1/100, 100] only matters for separable data, whose NLL keeps falling as
    T -> 0 (then T = 1/100: as sharp as allowed).

    Args:
        logits: ``(N, C)`` logits, or :func:`log_probabilities` of stored probabilities.
        labels: ``(N,)`` reference class indices.

    Raises:
        ValueError: empty input, mismatched shapes or labels out of range.
    """
    x, y = _check(logits, labels)
    result = minimize_scalar(
        lambda log_t: negative_log_likelihood(x, y, math.exp(log_t)),
        bounds=(-_LOG_T_BOUND, _LOG_T_BOUND),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(math.exp(result.x))


def brier_score(probs: np.ndarray, labels: np.ndarray) -> float:
    """Multi-class Brier score: mean over cases of ``sum_k (p_k - [k = label])^2``, in
    [0, 2]; 0 is perfect."""
    p, y = _check(probs, labels)
    onehot = np.zeros_like(p)
    onehot[np.arange(len(y)), y] = 1.0
    return float(((p - onehot) ** 2).sum(axis=1).mean())


@dataclass(frozen=True)
class ReliabilityBin:
    """One confidence bin: ``[low, high)`` (the last bin includes 1), its cases, their mean
    top-label confidence and accuracy (NaN when empty)."""

    low: float
    high: float
    num_cases: int
    confidence: float
    accuracy: float


def reliability_bins(
    probs: np.ndarray, labels: np.ndarray, num_bins: int = DEFAULT_NUM_BINS
) -> list[ReliabilityBin]:
    """Cases grouped by top-label confidence (max probability) into ``num_bins``
    equal-width bins over [0, 1]."""
    p, y = _check(probs, labels)
    if num_bins < 1:
        raise ValueError(f"num_bins must be >= 1, got {num_bins}")
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    index = np.minimum((confidence * num_bins).astype(np.int64), num_bins - 1)
    out = []
    for b in range(num_bins):
        members = index == b
        n = int(members.sum())
        out.append(
            ReliabilityBin(
                low=b / num_bins,
                high=(b + 1) / num_bins,
                num_cases=n,
                confidence=float(confidence[members].mean()) if n else math.nan,
                accuracy=float(correct[members].mean()) if n else math.nan,
            )
        )
    return out


def expected_calibration_error(
    probs: np.ndarray, labels: np.ndarray, num_bins: int = DEFAULT_NUM_BINS
) -> float:
    """Top-label ECE: ``sum_b (n_b / N) |accuracy_b - confidence_b|`` over the
    :func:`reliability_bins` (empty bins weigh 0)."""
    bins = reliability_bins(probs, labels, num_bins)
    total = sum(b.num_cases for b in bins)
    return float(
        sum(b.num_cases / total * abs(b.accuracy - b.confidence) for b in bins if b.num_cases)
    )


def calibration_scores(
    probs: np.ndarray,
    labels: np.ndarray,
    *,
    calibrated: np.ndarray | None = None,
    num_bins: int = DEFAULT_NUM_BINS,
) -> dict:
    """The ``calibration`` block of an evaluation summary: ECE, Brier score and the
    reliability bins of ``probs``, and of ``calibrated`` (same cases) when given."""
    out: dict = {"num_bins": num_bins, "num_cases": int(len(labels))}
    for key, p in (("uncalibrated", probs), ("calibrated", calibrated)):
        if p is None:
            continue
        out[key] = {
            "ece": expected_calibration_error(p, labels, num_bins),
            "brier": brier_score(p, labels),
            "bins": [vars(b) for b in reliability_bins(p, labels, num_bins)],
        }
    return out


def class_indices(names: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """Class names as indices into ``classes``."""
    lookup = {c: i for i, c in enumerate(classes)}
    return np.array([lookup[n] for n in names], dtype=np.int64)
