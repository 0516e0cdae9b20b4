"""Statistics shared by the benchmarks: paired bootstrap intervals over folds, seeds or
slices, and how much a learning curve still moves at its end. Kept apart from the table
and figure code so that the multitask report and the peer workloads read one definition."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Interval:
    """Mean paired difference and its percentile bootstrap interval over ``num_pairs``."""

    mean: float
    low: float
    high: float
    num_pairs: int

    def as_dict(self) -> dict[str, float | int]:
        return {"mean": self.mean, "low": self.low, "high": self.high, "num_pairs": self.num_pairs}


def paired_bootstrap_interval(
    a: Sequence[float],
    b: Sequence[float],
    *,
    confidence: float = 0.95,
    num_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> Interval:
    """Mean of ``a[i] - b[i]`` and its percentile bootstrap interval, resampling pairs.

    Each resample draws n pairs with replacement (a pair keeps its two values together, so
    whatever a pair shares, e.g. its fold and seed, cancels in its difference) and takes the
    mean difference; the interval is the ``(1 - confidence) / 2`` and ``(1 + confidence) /
    2`` quantiles of those means. Pairs where either value is NaN are left out. The
    differences are sorted before resampling, so the result does not depend on the order in
    which the pairs are given, and the fixed ``seed`` makes it reproducible.

    With few pairs (3 folds x 2 seeds = 6) the percentile interval is too narrow: it can
    only take the values of means of 6 of the observed differences.

    Args:
        a, b: paired values of equal length.

    Returns:
        :class:`Interval`; all NaN (and ``num_pairs`` 0) without a complete pair.

    Raises:
        ValueError: lengths differ, ``confidence`` outside (0, 1) or ``num_resamples`` < 1.
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"paired values need equal 1-D shapes, got {x.shape} and {y.shape}.")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}.")
    if num_resamples < 1:
        raise ValueError(f"num_resamples must be >= 1, got {num_resamples}.")
    both = np.isfinite(x) & np.isfinite(y)
    diff = np.sort(x[both] - y[both])
    n = len(diff)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, n, size=(num_resamples, n))].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return Interval(float(diff.mean()), float(low), float(high), n)


def paired_bootstrap_ci(
    a: Sequence[float],
    b: Sequence[float],
    *,
    confidence: float = 0.95,
    num_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float, float]:
    """:func:`paired_bootstrap_interval` for the peer tables, where every pair must be
    complete: a missing fold or slice there is a bug to surface, not a pair to drop.
    With five folds the interval is coarse (at most 126 distinct resample means).

    Returns:
        ``(mean difference, low, high)``.

    Raises:
        ValueError: lengths differ, no pair, a non-finite value, or an option
            :func:`paired_bootstrap_interval` refuses.
    """
    if len(a) != len(b) or len(a) == 0:
        raise ValueError(f"need two equally long, non-empty sequences; got {len(a)} and {len(b)}")
    iv = paired_bootstrap_interval(
        a, b, confidence=confidence, num_resamples=num_resamples, seed=seed
    )
    if iv.num_pairs != len(a):  # the interval left out a pair holding NaN or infinity
        raise ValueError(f"non-finite value among the pairs {list(a)} and {list(b)}")
    return iv.mean, iv.low, iv.high


def last_quarter_change(series: Sequence[float | None]) -> float:
    """How much a learning curve still moved at the end: the mean of its last quarter of
    epochs minus the mean of the quarter before (NaN with fewer than 8 finite epochs).
    Quarters, not single epochs, because per-epoch values are noisy; near 0 against the
    curve's own range means it has flattened."""
    values = np.array([math.nan if v is None else float(v) for v in series])
    values = values[np.isfinite(values)]
    if values.size < 8:
        return math.nan
    quarter = values.size // 4
    return float(values[-quarter:].mean() - values[-2 * quarter : -quarter].mean())
