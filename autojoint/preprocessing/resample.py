"""Resample images and label maps between voxel grids.

Thick slices get their own rule. When one axis is much coarser than the others (slices of
5-8 mm under a ~1 mm pixel grid), a cubic spline across it overshoots: between two 8 mm
slabs it rings past the HU values it joins. So for such data the in-plane axes are
resampled with the usual spline and the thick axis on its own, with a cubic clipped to the
range of the two slices each new value lies between: the cubic's accuracy without its
overshoot (a linear blend has no overshoot either but was ~9 % further from the real
slices). Label maps take the nearest slice across a thick axis that grows, which for two
labels is what the one-hot blend gives anyway, ~3x faster. ``benchmarks/thick_slices.py``
measures all of this on real CT and real masks; docs/preprocessing.md holds the figures.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from skimage.transform import resize

from autojoint.arrays.labels import label_argmax

# A slice axis counts as thick when its spacing exceeds this many times every other axis's
# (nnU-Net decides the same question with the same ratio).
ANISOTROPY_THRESHOLD = 3.0
# Spline order across a thick axis for images (clipped; see the module docstring).
THICK_ORDER_IMAGE = 3


def shape_for_spacing(
    shape: Sequence[int], old_spacing: Sequence[float], new_spacing: Sequence[float]
) -> tuple[int, ...]:
    """Voxel count per axis that covers the same physical extent at ``new_spacing``."""
    return tuple(
        max(int(round(s * o / n)), 1)
        for s, o, n in zip(shape, old_spacing, new_spacing, strict=True)
    )


def thick_axis(old_spacing: Sequence[float], new_spacing: Sequence[float]) -> int | None:
    """The axis to resample on its own, or None when neither grid has one thick axis.

    The source grid decides first (its slices are what a spline would overshoot between);
    a thick target axis also counts, because shrinking onto it with a cubic rings as well.
    """
    for spacing in (old_spacing, new_spacing):
        values = [float(s) for s in spacing]
        axis = int(np.argmax(values))
        others = [s for i, s in enumerate(values) if i != axis]
        if others and values[axis] > ANISOTROPY_THRESHOLD * max(others):
            return axis
    return None


def _resize(volume: np.ndarray, new_shape: tuple[int, ...], order: int) -> np.ndarray:
    """skimage's ``resize`` (edge mode, a Gaussian anti-aliasing filter along each axis that
    shrinks, clipped to the input's range), float32 out, computed one axis at a time as a
    matrix product.

    Every step of that resize is linear and acts along one axis (the Gaussian, the spline
    prefilter, the edge padding, the tensor-product spline), so the N-D call equals the
    product of one matrix per axis; only the final clip is not linear, and it is applied
    once, at the end, as skimage does. The matrix products run in BLAS (all cores) instead
    of scipy's single-threaded N-D spline, which also interpolates along the axes that do
    not change: a 512 x 512 x 300 CT to 433 x 433 in-plane took 0.7 s instead of 13.1 s,
    with values within 1e-3 HU of skimage's (float32 rounding; ``tests/preprocessing/
    test_thick_slices.py`` holds the reference comparison). Inputs are finite (image reading
    refuses NaN): a NaN would spread along every line through it, not over a few voxels.
    """
    if volume.size == 0:
        raise ValueError(f"cannot resize an empty array of shape {volume.shape}")
    changed = [a for a in range(volume.ndim) if new_shape[a] != volume.shape[a]]
    if not changed:  # a new array all the same: callers may write into the result
        return np.array(volume, dtype=np.float32, copy=True)
    out = volume.astype(np.float32, copy=False)
    low, high = float(out.min()), float(out.max())
    # the axis that shrinks most first: every later product has less to multiply
    for axis in sorted(changed, key=lambda a: new_shape[a] / out.shape[a]):
        weights = axis_weights(out.shape[axis], new_shape[axis], order)
        out = np.moveaxis(np.tensordot(weights, out, axes=([1], [axis])), 0, axis)
    out = np.ascontiguousarray(out, dtype=np.float32)
    return np.clip(out, low, high, out=out)


@functools.lru_cache(maxsize=32)
def axis_weights(old_size: int, new_size: int, order: int) -> np.ndarray:
    """The linear map skimage's ``resize`` applies along one axis of ``old_size`` samples,
    as a read-only ``(new_size, old_size)`` float32 matrix: column ``i`` is the resized unit
    impulse at ``i`` (unclipped; anti-aliasing where the axis shrinks, as ``resize`` does
    when any axis shrinks: its filter width is 0 along the others)."""
    weights = np.empty((new_size, old_size), np.float64)
    impulse = np.zeros(old_size)
    for i in range(old_size):
        impulse[i] = 1.0
        weights[:, i] = resize(
            impulse,
            (new_size,),
            order=order,
            mode="edge",
            anti_aliasing=new_size < old_size,
            preserve_range=True,
            clip=False,
        )
        impulse[i] = 0.0
    matrix = weights.astype(np.float32)
    matrix.flags.writeable = False
    return matrix


def _source_centres(old_size: int, new_size: int) -> np.ndarray:
    """Where each output sample along one axis sits in source coordinates, pixel centres
    aligned (output ``i`` at ``(i + 0.5) * old / new - 0.5``, as skimage's ``resize``)."""
    return (np.arange(new_size) + 0.5) * (old_size / new_size) - 0.5


def nearest_indices(old_size: int, new_size: int) -> np.ndarray:
    """Source index of each output sample along one axis (see :func:`_source_centres`)."""
    centres = _source_centres(old_size, new_size)
    return np.clip(np.floor(centres + 0.5), 0, old_size - 1).astype(np.intp)


def _bracketing_range(
    slices: np.ndarray, new_size: int, axis: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per output position along ``axis``, the min and max of the two source slices whose
    centres bracket it (``slices`` already at the output size in-plane)."""
    old_size = slices.shape[axis]
    below = np.clip(np.floor(_source_centres(old_size, new_size)), 0, old_size - 1)
    below = below.astype(np.intp)
    above = np.clip(below + 1, 0, old_size - 1)
    a, b = np.take(slices, below, axis=axis), np.take(slices, above, axis=axis)
    return np.minimum(a, b), np.maximum(a, b)


def _along_axis(volume: np.ndarray, size: int, axis: int, thick_order: int) -> np.ndarray:
    """Resample ``axis`` alone to ``size``: ``thick_order`` 0 picks the nearest slice, 1
    blends the two nearest, 2-5 is a spline clipped, where the axis grows, to the range of
    the two slices each value lies between (a spline's accuracy without its overshoot)."""
    if volume.shape[axis] == size:
        return volume
    if thick_order == 0:
        return np.take(volume, nearest_indices(volume.shape[axis], size), axis=axis)
    new_shape = list(volume.shape)
    new_shape[axis] = size
    # the other axes keep their size, so they map onto themselves: only ``axis`` moves
    out = _resize(volume, tuple(new_shape), thick_order)
    if thick_order > 1 and size > volume.shape[axis]:
        low, high = _bracketing_range(volume, size, axis)
        np.clip(out, low, high, out=out)
    return out


def _resize_thick(
    volume: np.ndarray, new_shape: tuple[int, ...], axis: int, order: int, thick_order: int
) -> np.ndarray:
    """The in-plane axes with the spline ``order``, the thick ``axis`` on its own with
    ``thick_order``; whichever step makes the array smaller runs first."""
    if new_shape[axis] < volume.shape[axis]:
        return _resize(_along_axis(volume, new_shape[axis], axis, thick_order), new_shape, order)
    in_plane = list(new_shape)
    in_plane[axis] = volume.shape[axis]
    return _along_axis(_resize(volume, tuple(in_plane), order), new_shape[axis], axis, thick_order)


def resample_image(
    data: np.ndarray,
    new_shape: Sequence[int],
    *,
    order: int = 3,
    separate_axis: int | None = None,
    thick_order: int = THICK_ORDER_IMAGE,
) -> np.ndarray:
    """Resample every channel of ``data`` to ``new_shape`` (spline ``order``), float32 out.

    Anti-aliasing is applied when shrinking, so a coarse whole-scan view keeps small
    lesions as faint blobs instead of dropping them between samples. ``separate_axis``
    (from :func:`thick_axis`) is resampled on its own with ``thick_order`` (see
    :func:`_along_axis`).

    Shape:
        data: ``(C, Z, Y, X)`` -> ``(C, *new_shape)``.
    """
    new_shape = tuple(int(s) for s in new_shape)
    if tuple(data.shape[1:]) == new_shape:
        return data.astype(np.float32, copy=True)
    if separate_axis is None:
        return np.stack([_resize(c, new_shape, order) for c in data])
    return np.stack([_resize_thick(c, new_shape, separate_axis, order, thick_order) for c in data])


def resample_label(
    seg: np.ndarray,
    new_shape: Sequence[int],
    num_labels: int,
    *,
    separate_axis: int | None = None,
) -> np.ndarray:
    """Resample a label map by linear interpolation of each label's one-hot mask, then argmax.

    Nearest-neighbour would shift boundaries by up to half a voxel and can erase thin
    structures; per-label linear interpolation keeps them and never invents label values.
    Where a thick ``separate_axis`` grows, the nearest slice is taken along it (see the
    module docstring); onto thick slices the one-hot blend is kept.

    Shape:
        seg: ``(Z, Y, X)`` integer -> ``new_shape`` uint8.
    """
    new_shape = tuple(int(s) for s in new_shape)
    if tuple(seg.shape) == new_shape:
        return seg.astype(np.uint8, copy=True)
    if separate_axis is not None and new_shape[separate_axis] <= seg.shape[separate_axis]:
        separate_axis = None  # onto thick slices, the one-hot blend kept more (measured)
    grid = list(new_shape)
    if separate_axis is not None:
        grid[separate_axis] = seg.shape[separate_axis]
    labels = _one_hot_linear(seg, tuple(grid), num_labels)
    if separate_axis is None or labels.shape == new_shape:
        return labels
    index = nearest_indices(labels.shape[separate_axis], new_shape[separate_axis])
    return np.take(labels, index, axis=separate_axis)


def _one_hot_linear(seg: np.ndarray, new_shape: tuple[int, ...], num_labels: int) -> np.ndarray:
    """Argmax of each label's one-hot mask resampled linearly."""
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
    return label_argmax(scores)
