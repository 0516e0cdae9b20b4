"""Resolution-dependent planning: topology, memory estimate, patch and batch search.

Used for the full-resolution configuration and, on large scans, the low-resolution one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from autojoint.planning.schema import (
    MIN_BATCH_SIZE,
    NetworkOptions,
    Topology,
    Triple,
    lesion_map_channels,
)

MAX_PYRAMID_LEVEL = 4
"""MSD-Net's ResNet has four stages, so PCB-4 (kernels 15..27) is the largest it defines;
deeper stages of a self-configured U-Net reuse PCB-4. Defined in the planner, whose memory
estimate counts the pyramid branches; the network reads it from here."""

MIN_BOTTLENECK_VOXELS = 4
# Smallest whole-scan view axis: the classifier's three stride-2 units leave >= 2 voxels.
MIN_CLASSIFICATION_AXIS = 16
MAX_STAGES = 6
MAX_BATCH_FRACTION_OF_DATASET = 0.05
# Stored activations per voxel and feature of each stage (encoder + decoder, kept for
# backward), plus framework overhead. Calibrated so that a budget of G GB reproduces the
# plans nnU-Net v2 makes for a G GB GPU with its plain U-Net (8 GB: 1 mm isotropic, median
# 300^3 -> 128^3 batch 2; (3, 0.8, 0.8) mm, median (100, 400, 400) -> (56, 192, 192) batch 2).
TENSORS_PER_STAGE = 9.7
# Network switches (docs/planning.md, "Memory model"), per sample, in feature-map elements,
# calibrated on the tensors the real JointNet saves for backward (tests/planning):
# reverse attention saves the one-channel coarse logit upsampled, its sigmoid and 1 - it
# at every decoder level (the re-weighted skip replaces the skip the decoder saved anyway);
REVERSE_ATTENTION_MAPS = 3
# the cross-stitch stem saves, per input, its 4 inception branches (conv, norm, activation
# each, a max-pool) and the stitched mix: measured 4.8 x its channels at full resolution.
STEM_TENSORS = 4.8
# MSD-Net's blocks, calibrated the same way: a pyramid block PCB-k saves, per branch, the
# inputs of its 1D depth-wise convs after the first and of the point-wise conv (one map per
# convolved axis; the stage output feeding every branch is stored once), plus about 2 maps
# for the sum, norm and activation; a residual refinement block about 4 maps of its
# channels; channel attention saves one C map less per decoder stage than the 2C
# concatenation it replaces.
PYRAMID_EXTRA_MAPS = 2
REFINEMENT_BLOCK_MAPS = 4
CHANNEL_ATTENTION_MAPS = -1
# A 2D image's starting patch: 2048^2 pixels shaped like a physical square.
INITIAL_PATCH_VOXELS_2D = 2048.0**2


def plan_topology(
    patch_size: Triple,
    spacing: tuple[float, float, float],
    *,
    base_features: int,
    max_features: int,
    is_2d: bool = False,
) -> Topology:
    """Pool an axis while its spacing is within 2x of the finest and the bottleneck keeps
    at least 4 voxels; use kernel 1 on axes still too coarse to mix neighbours.

    ``is_2d`` (a 2d configuration): axis 0 (the slices) gets kernel 1 and stride 1 in every
    stage, so the 3D layers act as 2D ones and each slice is processed on its own; spacing
    rules apply to the in-plane axes only.
    """
    sp, size = list(spacing), list(patch_size)
    planar = [not (is_2d and a == 0) for a in range(3)]

    def kernel() -> Triple:
        m = min(s for s, p in zip(sp, planar, strict=True) if p)
        k = [3 if s <= 2 * m and p else 1 for s, p in zip(sp, planar, strict=True)]
        return (k[0], k[1], k[2])

    strides: list[Triple] = [(1, 1, 1)]
    kernels: list[Triple] = [kernel()]
    while len(strides) < MAX_STAGES:
        m = min(s for s, p in zip(sp, planar, strict=True) if p)
        st = [
            2 if planar[a] and sp[a] <= 2 * m and size[a] >= 2 * MIN_BOTTLENECK_VOXELS else 1
            for a in range(3)
        ]
        if st == [1, 1, 1]:
            break
        sp = [s * f for s, f in zip(sp, st, strict=True)]
        size = [z // f for z, f in zip(size, st, strict=True)]
        strides.append((st[0], st[1], st[2]))
        kernels.append(kernel())
    feats = tuple(min(base_features * 2**s, max_features) for s in range(len(strides)))
    return Topology(features_per_stage=feats, kernel_sizes=tuple(kernels), strides=tuple(strides))


def estimate_activation_elements(
    patch_size: Triple,
    topology: Topology,
    *,
    classification_shape: Triple | None = None,
    network: NetworkOptions | None = None,
    in_channels: int = 1,
    num_labels: int = 2,
) -> float:
    """Feature-map elements of one sample's training step kept for backward (see
    :func:`estimate_memory_gb`); the unit the hook-count calibration test compares."""
    net = network or NetworkOptions()
    passes = net.refinement_passes + 1  # iterative refinement: n + 1 U-Net passes, all kept

    def seg_pass(shape: Triple) -> float:
        vox = np.array(shape, dtype=np.float64)
        total = 0.0
        last = topology.num_stages - 1
        for s, stride in enumerate(topology.strides):
            vox = np.maximum(vox // np.array(stride), 1)
            n = float(np.prod(vox))
            total += topology.features_per_stage[s] * n * TENSORS_PER_STAGE
            if net.reverse_attention and s < last:  # the skip of stage s is re-weighted
                total += REVERSE_ATTENTION_MAPS * n
            feats = topology.features_per_stage[s]
            if net.pyramid_conv:
                branches = min(s + 1, MAX_PYRAMID_LEVEL)
                axes = sum(k > 1 for k in topology.kernel_sizes[s])
                total += feats * n * (branches * axes + PYRAMID_EXTRA_MAPS)
            if net.residual_refinement and s < last:  # decoder stage s runs at this scale
                total += REFINEMENT_BLOCK_MAPS * feats * n
            if net.channel_attention and s < last:
                total += CHANNEL_ATTENTION_MAPS * feats * n
        return total

    def stem(shape: Triple) -> float:
        if not net.cross_stitch:
            return 0.0
        stem_ch = 4 * max(1, math.ceil(topology.features_per_stage[0] / 4))
        return STEM_TENSORS * stem_ch * math.prod(shape)

    elements = stem(patch_size) + passes * seg_pass(patch_size)
    if classification_shape is not None:
        # The view goes through the segmentation net (every refinement pass), then the
        # classification encoder (3 residual units at 1/2, 1/4, 1/8 of the view, counted as
        # one more seg-pass's worth) fed with image + lesion map: C + 1 channels ("concat"),
        # C + one per lesion label ("labels"), the C-channel product ("multiply") or the C
        # image channels ("image").
        image_ch = (
            4 * max(1, math.ceil(topology.features_per_stage[0] / 4))
            if net.cross_stitch
            else in_channels
        )
        cls_in = image_ch + lesion_map_channels(net.classifier_input, num_labels)
        elements += stem(classification_shape) + (passes + 1) * seg_pass(classification_shape)
        elements += cls_in * math.prod(classification_shape)
    return elements


def estimate_memory_gb(
    patch_size: Triple,
    topology: Topology,
    batch_size: int,
    *,
    classification_shape: Triple | None = None,
    network: NetworkOptions | None = None,
    in_channels: int = 1,
    num_labels: int = 2,
) -> float:
    """Activation memory of one training step: feature-map sizes of a forward pass kept for
    backward, for the patch and (joint training) the whole-scan view through both heads,
    including what the network switches add (reverse attention, cross-stitch stem,
    iterative refinement, classifier input), float32."""
    elements = estimate_activation_elements(
        patch_size,
        topology,
        classification_shape=classification_shape,
        network=network,
        in_channels=in_channels,
        num_labels=num_labels,
    )
    return elements * batch_size * 4 / 1024**3


def _round_to_multiple(shape: np.ndarray, multiple: Triple) -> Triple:
    m = np.array(multiple)
    out = np.maximum(np.floor(shape / m) * m, m).astype(int)
    return (int(out[0]), int(out[1]), int(out[2]))


def _round_up_to_multiple(shape: np.ndarray, multiple: Triple, limit: np.ndarray) -> Triple:
    """Round up to a multiple, unless that passes ``limit`` (then round down)."""
    m = np.array(multiple)
    up = np.ceil(shape / m) * m
    down = np.maximum(np.floor(shape / m) * m, m)
    out = np.where(up <= np.maximum(limit, m), up, down).astype(int)
    return (int(out[0]), int(out[1]), int(out[2]))


def initial_patch(
    spacing: tuple[float, float, float], voxels: float = 256.0**3, *, is_2d: bool = False
) -> np.ndarray:
    """Patch of ``voxels`` voxels covering a physical cube (axis length inversely
    proportional to spacing), the starting point of the patch search; ``is_2d``: one slice
    ``(1, py, px)`` covering a physical square of ``INITIAL_PATCH_VOXELS_2D`` pixels."""
    inv = 1.0 / np.array(spacing, dtype=np.float64)
    if is_2d:
        side = inv[1:] * (INITIAL_PATCH_VOXELS_2D / float(np.prod(inv[1:]))) ** (1 / 2)
        return np.round(np.array([1.0, side[0], side[1]]))
    return np.round(inv * (voxels / float(np.prod(inv))) ** (1 / 3))


def _classification_shape(median_shape: np.ndarray, patch: Triple, stride: Triple) -> Triple:
    """Whole cropped scan, shrunk uniformly so it holds no more voxels than one patch
    (axes of one voxel, e.g. a 2D image's, stay one voxel and do not shrink).

    No free axis goes below ``MIN_CLASSIFICATION_AXIS`` voxels (or the median scan's size,
    if smaller): the classifier halves each axis three times, and a view that reaches one
    voxel there cannot be instance-normalised (training would crash on a tiny budget).
    """
    free = median_shape > 1
    ratio = math.prod(patch) / float(np.prod(median_shape))
    f = min(1.0, ratio ** (1 / max(int(free.sum()), 1)))
    floor = np.minimum(median_shape, MIN_CLASSIFICATION_AXIS)
    shape = np.where(free, np.maximum(median_shape * f, floor), median_shape)
    return _round_to_multiple(shape, stride)


@dataclass(frozen=True)
class ResolutionFit:
    """Patch, batch, topology and view fitted to a memory budget at one spacing."""

    spacing: tuple[float, float, float]
    median_shape: Triple
    patch_size: Triple
    batch_size: int
    classification_shape: Triple | None
    topology: Topology
    estimated_memory_gb: float
    batch_limited_by_memory: bool


def fit_resolution(
    spacing: tuple[float, float, float],
    shapes_mm: np.ndarray,
    *,
    memory_budget_gb: float,
    has_classification: bool,
    base_features: int,
    max_features: int,
    is_2d: bool = False,
    network: NetworkOptions | None = None,
    in_channels: int = 1,
    num_labels: int = 2,
) -> ResolutionFit:
    """Fit patch and batch at ``spacing`` for cases of physical extents ``shapes_mm``.

    Starts from a 256^3-voxel patch shaped like a physical cube (finer axes get more
    voxels), no larger than the median scan; then shrinks, one stride-step at a time, the
    axis that is largest relative to the median shape until the estimate fits. ``is_2d``
    fits a 2d configuration: patch ``(1, py, px)`` from a 2048^2-pixel physical square,
    topology within the slice (:func:`plan_topology`). ``network`` (the switches) and
    ``in_channels`` enter the memory estimate.

    Shape:
        shapes_mm: ``(num_cases, 3)`` extents in mm, in the plan's axis order.
    """
    shapes = shapes_mm / np.array(spacing)
    median_shape = np.maximum(np.round(np.median(shapes, axis=0)), 1)

    def fit(patch: Triple) -> tuple[Topology, Triple | None, float]:
        topo = plan_topology(
            patch, spacing, base_features=base_features, max_features=max_features, is_2d=is_2d
        )
        cls = (
            _classification_shape(median_shape, patch, topo.total_stride)
            if has_classification
            else None
        )
        return topo, cls, memory(patch, topo, MIN_BATCH_SIZE, cls)

    def memory(patch: Triple, topo: Topology, batch: int, cls: Triple | None) -> float:
        return estimate_memory_gb(
            patch,
            topo,
            batch,
            classification_shape=cls,
            network=network,
            in_channels=in_channels,
            num_labels=num_labels,
        )

    patch_arr = np.minimum(initial_patch(spacing, is_2d=is_2d), median_shape)
    topo, cls_shape, mem = fit(_round_to_multiple(patch_arr, (1, 1, 1)))
    patch_arr = np.array(_round_up_to_multiple(patch_arr, topo.total_stride, median_shape))
    topo, cls_shape, mem = fit(tuple(int(v) for v in patch_arr))  # type: ignore[arg-type]
    while mem > memory_budget_gb:
        step = np.array(topo.total_stride)
        # Only axes that stay >= 8 voxels after the step may shrink; no candidate = done.
        rel = np.where(patch_arr - step >= 8, patch_arr / median_shape, -np.inf)
        if not np.isfinite(rel).any():
            break
        axis = int(np.argmax(rel))
        patch_arr[axis] -= step[axis]
        topo, cls_shape, mem = fit(tuple(int(v) for v in patch_arr))  # type: ignore[arg-type]
        patch_arr = np.array(_round_to_multiple(patch_arr, topo.total_stride))
    patch = _round_to_multiple(patch_arr, topo.total_stride)
    topo, cls_shape, mem = fit(patch)

    dataset_voxels = float(np.sum(np.prod(shapes, axis=1)))
    batch = MIN_BATCH_SIZE
    while (
        memory(patch, topo, batch + 1, cls_shape) <= memory_budget_gb
        and (batch + 1) * math.prod(patch) <= MAX_BATCH_FRACTION_OF_DATASET * dataset_voxels
    ):
        batch += 1
    return ResolutionFit(
        spacing=spacing,
        median_shape=(int(median_shape[0]), int(median_shape[1]), int(median_shape[2])),
        patch_size=patch,
        batch_size=batch,
        classification_shape=cls_shape,
        topology=topo,
        estimated_memory_gb=memory(patch, topo, batch, cls_shape),
        batch_limited_by_memory=memory(patch, topo, batch + 1, cls_shape) > memory_budget_gb,
    )
