"""Resample images and label maps between voxel grids."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from skimage.transform import resize


def shape_for_spacing(
    shape: Sequence[int], old_spacing: Sequence[float], new_spacing: Sequence[float]
) -> tuple[int, ...]:
    """Voxel count per axis that covers the same physical extent at ``new_spacing``."""
    return tuple(
        max(int(round(s * o / n)), 1)
        for s, o, n in zip(shape, old_spacing, new_spacing, strict=True)
    )


def resample_image(data: np.ndarray, new_shape: Sequence[int], *, order: int = 3) -> np.ndarray:
    """Resample every channel of ``data`` to ``new_shape`` (spline ``order``), float32 out.

    Anti-aliasing is applied when shrinking, so a coarse whole-scan view keeps small
    lesions as faint blobs instead of dropping them between samples.

    Shape:
        data: ``(C, Z, Y, X)`` -> ``(C, *new_shape)``.
    """
    new_shape = tuple(int(s) for s in new_shape)
    if tuple(data.shape[1:]) == new_shape:
        return data.astype(np.float32, copy=True)
    shrinking = any(n < o for n, o in zip(new_shape, data.shape[1:], strict=True))
    return np.stack(
        [
            resize(
                c.astype(np.float32),
                new_shape,
                order=order,
                mode="edge",
                anti_aliasing=shrinking,
                preserve_range=True,
            ).astype(np.float32)
            for c in data
        ]
    )


def resample_label(seg: np.ndarray, new_shape: Sequence[int], num_labels: int) -> np.ndarray:
    """Resample a label map by linear interpolation of each label's one-hot mask, then argmax.

    Nearest-neighbour would shift boundaries by up to half a voxel and can erase thin
    structures; per-label linear interpolation keeps them and never invents label values.

    Shape:
        seg: ``(Z, Y, X)`` integer -> ``new_shape`` uint8.
    """
    new_shape = tuple(int(s) for s in new_shape)
    if tuple(seg.shape) == new_shape:
        return seg.astype(np.uint8, copy=True)
    scores = np.stack(
        [
            resize(
                (seg == v).astype(np.float32),
                new_shape,
                order=1,
                mode="edge",
                anti_aliasing=False,
                preserve_range=True,
            )
            for v in range(num_labels)
        ]
    )
    return np.argmax(scores, axis=0).astype(np.uint8)


def resample_probabilities(probs: np.ndarray, new_shape: Sequence[int]) -> np.ndarray:
    """Linear resampling of per-class probability maps (used to go back to the input grid).

    Shape:
        probs: ``(K, Z, Y, X)`` -> ``(K, *new_shape)``.
    """
    return resample_image(probs, new_shape, order=1)
