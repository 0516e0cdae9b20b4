"""Turn a fingerprint into a plan: spacing, topology, patch and batch size, weights.

The heuristics follow nnU-Net's ideas (median spacing, pool an axis only while its
spacing is close to the finest, fit patch and batch to a memory budget) and add what joint
training needs: a whole-scan classification view, per-scale eta weights and loss weights.
See docs/planning.md for the reasoning.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from autojoint.fingerprint.compute import equivalent_diameter
from autojoint.fingerprint.schema import Fingerprint
from autojoint.io.dataset import is_ct
from autojoint.io.image_io import SLICE_SPACING_2D_MM
from autojoint.planning.resolution import ResolutionFit, fit_resolution
from autojoint.planning.schema import (
    ChannelNormalization,
    LossOptions,
    LossWeights,
    NetworkOptions,
    Plan,
    SubConfiguration,
    Topology,
    Triple,
)

logger = logging.getLogger(__name__)

# Without a GPU, "memory" is not the limit: step time is. This budget keeps one training
# step of the CPU profile around 1 s on 2 cores (measured: docs/planning.md).
CPU_PROFILE_BUDGET_GB = 0.4
# Headroom between a CUDA device's total memory and the budget (usable_budget_gb).
CUDA_RESERVE_GB = 1.5
CUDA_WORKSPACE_FRACTION = 0.10
ANISOTROPY_RATIO = 3.0
LOWRES_MIN_COVERAGE = 0.25
LOWRES_SPACING_STEP = 1.05
LOWRES_MAX_STEPS = 200


def target_spacing(fingerprint: Fingerprint) -> tuple[float, float, float]:
    """Median spacing per axis, with nnU-Net's anisotropy rule.

    If one axis is more than 3x coarser than the finest and also short in voxels, the median
    would throw away most of that axis's resolution for the finer-sliced cases; use its 10th
    percentile instead. 2D data: the median in-plane spacing, and the nominal slice
    spacing along z (every 2D case is one slice of it, so it stays one slice).
    """
    spacings = np.array([c.spacing for c in fingerprint.cases], dtype=np.float64)
    if fingerprint.is_2d:
        in_plane = np.median(spacings[:, 1:], axis=0)
        return (SLICE_SPACING_2D_MM, float(in_plane[0]), float(in_plane[1]))
    shapes = np.array([c.shape_after_crop for c in fingerprint.cases], dtype=np.float64)
    target = np.median(spacings, axis=0)
    worst = int(np.argmax(target))
    others = [a for a in range(3) if a != worst]
    median_shape = np.median(shapes * spacings / target, axis=0)
    if target[worst] > ANISOTROPY_RATIO * target[others].min() and (
        median_shape[worst] * ANISOTROPY_RATIO < median_shape[others].min()
    ):
        coarse = float(np.percentile(spacings[:, worst], 10))
        target[worst] = max(coarse, target[others].max() * 1.0001)
    return (float(target[0]), float(target[1]), float(target[2]))


def transpose_order(spacing: tuple[float, float, float]) -> Triple:
    """Axis permutation putting the coarsest axis first (the others keep their order), so
    thick slices are always axis 0 whatever the acquisition plane; stable for ties."""
    coarse = int(np.argmax(np.array(spacing)))
    if spacing[coarse] <= min(spacing) * (1 + 1e-6):  # isotropic: keep the array order
        return (0, 1, 2)
    rest = [a for a in range(3) if a != coarse]
    return (coarse, rest[0], rest[1])


def scale_weights(
    fingerprint: Fingerprint,
    spacing: tuple[float, float, float],
    topology: Topology,
    *,
    is_2d: bool = False,
) -> tuple[tuple[float, ...], str]:
    """eta_i, the per-scale weights of the fused mask and of deep supervision, finest scale
    first, from the lesion-size distribution (docs/methods.md, "eta: the per-scale weights").

    A scale resolves a lesion component when the component's equivalent diameter spans at
    least two voxels of that scale along its coarsest axis; eta_i is the share of all
    training components scale i resolves, normalised to sum 1. Scales too coarse for every
    lesion get 0, so they neither vote in the fused map nor pull in deep supervision.
    Without any lesion component (no masks) each coarser scale gets half the previous.
    A 2d configuration (``is_2d``) looks at the in-plane axes only; on 2D data the
    diameter is the disc's of the component's area.
    """
    diameters = equivalent_diameter(
        np.array(
            [v for c in fingerprint.cases for v in c.lesion_components.get("lesion", [])],
            dtype=np.float64,
        ),
        is_2d=fingerprint.is_2d,
    )
    axes = [1, 2] if is_2d else [0, 1, 2]
    stride = np.ones(3)
    coarsest_voxel = []
    for st in topology.strides:
        stride = stride * np.array(st)
        coarsest_voxel.append(float(np.max((np.array(spacing) * stride)[axes])))
    if diameters.size == 0:
        raw = np.array([0.5**i for i in range(topology.num_stages)])
        return tuple(float(v) for v in raw / raw.sum()), (
            "no lesion components in the fingerprint: finest scale first, each coarser "
            "scale half the previous, sum 1"
        )
    share = np.array([np.mean(diameters >= 2 * edge) for edge in coarsest_voxel])
    if share.sum() == 0:  # every lesion smaller than two voxels: trust the finest scale only
        share[0] = 1.0
    return tuple(float(v) for v in share / share.sum()), (
        "share of the {} training lesion components whose equivalent diameter spans >= 2 "
        "voxels at each scale (voxel edges {} mm), normalised to sum 1".format(
            diameters.size, ", ".join(f"{e:.1f}" for e in coarsest_voxel)
        )
    )


def view_spacing(
    median_shape: Sequence[int], spacing: Sequence[float], classification_shape: Sequence[int]
) -> tuple[float, float, float]:
    """Voxel size (mm) of the whole-scan view: the cropped median scan's extent over the
    view's shape. Coarser than the patch's (about 1.5x on the demo, 3x on a real chest CT),
    so the scales that resolve a lesion there are not the patch's."""
    out = [
        float(s) * float(n) / max(int(c), 1)
        for s, n, c in zip(spacing, median_shape, classification_shape, strict=True)
    ]
    return (out[0], out[1], out[2])


def classification_view_eta(
    fingerprint: Fingerprint,
    fit: ResolutionFit,
    *,
    is_2d: bool = False,
) -> tuple[tuple[float, ...], str]:
    """eta of the whole-scan view (``scale_weights`` at the view's voxel size); empty
    without a classification view."""
    if fit.classification_shape is None:
        return (), "no classification view"
    sp = view_spacing(fit.median_shape, fit.spacing, fit.classification_shape)
    eta, reason = scale_weights(fingerprint, sp, fit.topology, is_2d=is_2d)
    return eta, f"as eta, at the view's voxel size {tuple(round(v, 2) for v in sp)} mm: {reason}"


def plan_lowres(
    fingerprint: Fingerprint,
    full: ResolutionFit,
    shapes_mm: np.ndarray,
    **fit_kwargs: Any,
) -> tuple[SubConfiguration | None, str]:
    """nnU-Net's 3d_lowres idea: when the full-resolution patch covers less than a quarter
    of the median scan, coarsen the spacing (5% a step; on anisotropic data only the finer
    axes, until they catch up) until a fitted patch covers at least a quarter."""
    coverage = math.prod(full.patch_size) / math.prod(full.median_shape)
    if coverage >= LOWRES_MIN_COVERAGE:
        return None, (
            f"full-resolution patch covers {coverage:.0%} of the median scan (>= 25%): "
            "no low-resolution configuration needed"
        )
    sp = np.array(full.spacing, dtype=np.float64)
    fit = full
    for _ in range(LOWRES_MAX_STEPS):
        grow = sp < sp.max() if sp.max() > 2 * sp.min() else np.ones(3, dtype=bool)
        sp = np.where(grow, sp * LOWRES_SPACING_STEP, sp)
        fit = fit_resolution((float(sp[0]), float(sp[1]), float(sp[2])), shapes_mm, **fit_kwargs)
        if math.prod(fit.patch_size) / math.prod(fit.median_shape) >= LOWRES_MIN_COVERAGE:
            break
    config = _sub_configuration(fingerprint, fit, is_2d=False)
    final = math.prod(fit.patch_size) / math.prod(fit.median_shape)
    return config, (
        f"full-resolution patch covers only {coverage:.0%} of the median scan: spacing "
        f"coarsened to {tuple(round(float(v), 3) for v in sp)} mm where the patch "
        f"{fit.patch_size} covers {final:.0%}"
    )


def loss_parameters(fingerprint: Fingerprint) -> tuple[LossOptions, str]:
    """Focal and focal-Tversky parameters from the lesion voxel fraction f (all labels).

    Rarer lesions need more weight on them and on missing them:
    focal alpha (lesion side) = clip(1 - sqrt(f), 0.5, 0.9) -> 0.9 at f = 1%, 0.5 at 25%;
    Tversky alpha (false negatives) = 0.7 (MultiR-Net) for f <= 5%, falling linearly to 0.5
    (plain Dice) at f >= 25%, beta = 1 - alpha. Gammas keep the papers' values
    (focal 2, Tversky 4/3). Without masks the defaults stay.
    """
    stats = fingerprint.lesion_stats.get("lesion")
    f = stats.mean_voxel_fraction if stats is not None else float("nan")
    if not np.isfinite(f):
        return LossOptions(), "no lesion masks: default focal / Tversky parameters"
    focal_alpha = float(np.clip(1 - np.sqrt(f), 0.5, 0.9))
    tversky_alpha = float(np.clip(0.7 - 0.2 * (f - 0.05) / 0.20, 0.5, 0.7))
    weights = voxel_class_weights(fingerprint)
    options = LossOptions(
        focal_alpha=focal_alpha,
        tversky_alpha=tversky_alpha,
        tversky_beta=1 - tversky_alpha,
        voxel_class_weights=weights,
        weighted_ce=True,
        ce_class_weights=lesion_label_weights(fingerprint),
    )
    return options, (
        f"lesion voxel fraction {f:.4f}: focal alpha clip(1 - sqrt(f), 0.5, 0.9) = "
        f"{focal_alpha:.2f}; Tversky alpha 0.7 up to 5%, linear to 0.5 at 25% = "
        f"{tversky_alpha:.2f}, beta = 1 - alpha; class-weighted focal (MSD-Net) weights "
        f"f_c^-1/2 scaled to sum f_c w_c = 1: {[round(w, 2) for w in weights]}; "
        "segmentation loss dice_ce (nnU-Net default) unless an override names another, its "
        "cross-entropy weighted per label by (f_lesion / f_c)^1/2 (background 1, scaled to a "
        f"mean voxel weight of 1): {[round(w, 2) for w in options.ce_class_weights]}"
    )


def lesion_label_weights(fingerprint: Fingerprint) -> tuple[float, ...]:
    """Per-label cross-entropy weights for ``dice_ce`` (:func:`lesion_label_weights_from`)
    from the fingerprint's mean voxel fraction of each label; empty without masks."""
    union = fingerprint.lesion_stats.get("lesion")
    if (
        union is None
        or not np.isfinite(union.mean_voxel_fraction)
        or union.mean_voxel_fraction <= 0
    ):
        return ()
    return lesion_label_weights_from(label_fractions(fingerprint))


def label_fractions(fingerprint: Fingerprint) -> list[float]:
    """Mean voxel fraction of each label, ordered by label value: background is 1 minus
    all lesion labels together; NaN where the fingerprint has no statistics."""
    union = fingerprint.lesion_stats.get("lesion")
    total = union.mean_voxel_fraction if union is not None else float("nan")
    fractions = []
    for name, value in sorted(fingerprint.labels.items(), key=lambda kv: kv[1]):
        if value == 0:
            fractions.append(1.0 - total)
            continue
        stats = fingerprint.lesion_stats.get(name)
        fractions.append(stats.mean_voxel_fraction if stats is not None else float("nan"))
    return fractions


def lesion_label_weights_from(fractions: Sequence[float]) -> tuple[float, ...]:
    """How rare each lesion label is among the lesion voxels, as cross-entropy weights.

    ``fractions``: voxel fraction of each label, background first. Background gets 1, lesion
    label c gets (f_lesion / f_c)^(1/2), f_lesion the sum of the lesion labels' fractions
    (a label below ``MIN_VOXEL_FREQUENCY`` counts as that); then all are scaled so a voxel's
    expected weight is 1 and the cross-entropy keeps its scale. With one lesion label every
    weight is 1.

    The weights lift a label that is rare beside the other lesion labels (consolidation
    beside much ground-glass) without weighting lesions against background: that balance is
    the Dice term's job. Inverse voxel frequency against background (the focal loss's
    weights) made the network paint lesions everywhere: on the demo, lesion Dice 0.54
    against 0.72 with these weights, at the same consolidation Dice (docs/training.md).
    """
    f = np.array(
        [
            v if np.isfinite(v) and v > MIN_VOXEL_FREQUENCY else MIN_VOXEL_FREQUENCY
            for v in fractions
        ],
        dtype=np.float64,
    )
    lesion = float(f[1:].sum())
    w = np.ones_like(f)
    w[1:] = np.sqrt(lesion / f[1:])
    w /= float((f * w).sum() / f.sum())
    return tuple(float(v) for v in w)


MIN_VOXEL_FREQUENCY = 1e-4
"""Floor of a class's voxel frequency for its focal weight (a label that never occurs)."""


def voxel_class_weights(fingerprint: Fingerprint) -> tuple[float, ...]:
    """Per-class focal weights from voxel frequencies f_c (background = 1 - all lesions).

    w_c = f_c^(-1/2), scaled so that sum_c f_c w_c = 1: a voxel's expected weight is 1, so
    the loss keeps the cross-entropy's scale. The square root damps plain inverse
    frequency, which at 0.5% lesion voxels would weigh a lesion voxel 200x a background one
    and destabilise training. Ordered by label value (background first).
    """
    freqs = [
        f if np.isfinite(f) and f > MIN_VOXEL_FREQUENCY else MIN_VOXEL_FREQUENCY
        for f in label_fractions(fingerprint)
    ]
    freq = np.array(freqs, dtype=np.float64)
    weights = freq**-0.5
    weights /= float((freq * weights).sum())
    return tuple(float(w) for w in weights)


def _sub_configuration(
    fingerprint: Fingerprint, fit: ResolutionFit, *, is_2d: bool
) -> SubConfiguration:
    """A fitted configuration stored beside the top-level one: the low-resolution 3D one
    (``Plan.lowres``) or the 2d one of a 3D dataset (``Plan.two_d``, ``is_2d``)."""
    eta, _ = scale_weights(fingerprint, fit.spacing, fit.topology, is_2d=is_2d)
    view_eta, _ = classification_view_eta(fingerprint, fit, is_2d=is_2d)
    return SubConfiguration(
        target_spacing=fit.spacing,
        median_shape=fit.median_shape,
        patch_size=fit.patch_size,
        batch_size=fit.batch_size,
        classification_shape=fit.classification_shape,
        topology=fit.topology,
        eta=eta,
        estimated_memory_gb=fit.estimated_memory_gb,
        view_eta=view_eta,
    )


def case_counts(fingerprint: Fingerprint) -> dict[str, int]:
    """How many cases carry each task's reference (partial labels are masked per case)."""
    cases = fingerprint.cases
    return {
        "num_cases": len(cases),
        "num_with_label": sum(c.has_label for c in cases),
        "num_with_diagnosis": sum(c.diagnosis is not None for c in cases),
        "num_with_both": sum(c.has_label and c.diagnosis is not None for c in cases),
    }


def plan_experiment(
    fingerprint: Fingerprint,
    *,
    memory_budget_gb: float,
    device_profile: str,
    base_features: int = 32,
    max_features: int = 320,
    network: NetworkOptions | None = None,
) -> Plan:
    """Derive the full plan from a fingerprint and a memory budget.

    A 3D dataset gets ``fullres`` at the top level, ``lowres`` when its patch covers less
    than a quarter of the median scan, and ``two_d`` (slices of the volumes); a 2D dataset
    gets the ``2d`` configuration at the top level and no other. ``network`` (the switches)
    is stored in the plan and enters the memory estimate, so e.g. iterative refinement
    gets a smaller patch or batch at the same budget.

    Raises:
        ValueError: empty fingerprint or non-positive budget.
    """
    if not fingerprint.cases:
        raise ValueError("fingerprint holds no cases; nothing to plan.")
    if memory_budget_gb <= 0:
        raise ValueError(f"memory budget must be positive, got {memory_budget_gb} GB.")
    network = network or NetworkOptions()
    is_2d = fingerprint.is_2d
    array_spacing = target_spacing(fingerprint)
    # 2D data keeps its order: axis 0 is the one slice whatever the in-plane spacings.
    order = (0, 1, 2) if is_2d else transpose_order(array_spacing)
    # From here on every spacing and shape is in the transposed order (coarse axis first).
    spacing = (array_spacing[order[0]], array_spacing[order[1]], array_spacing[order[2]])
    # Physical extent (mm) of every cropped case, in the transposed axis order.
    shapes_mm = np.array(
        [np.array(c.shape_after_crop) * np.array(c.spacing) for c in fingerprint.cases]
    )[:, list(order)]
    has_cls = len(fingerprint.classes) > 0
    fit_kwargs: dict[str, Any] = {
        "memory_budget_gb": memory_budget_gb,
        "has_classification": has_cls,
        "base_features": base_features,
        "max_features": max_features,
        "network": network,
        "in_channels": len(fingerprint.channel_names),
        "num_labels": len(fingerprint.labels),
    }
    full = fit_resolution(spacing, shapes_mm, is_2d=is_2d, **fit_kwargs)
    if is_2d:
        lowres, lowres_reason = None, "2D data: no low-resolution configuration"
        two_d, two_d_reason = None, "2D data: the top level is the 2d configuration"
    else:
        lowres, lowres_reason = plan_lowres(fingerprint, full, shapes_mm, **fit_kwargs)
        two_d = _sub_configuration(
            fingerprint, fit_resolution(spacing, shapes_mm, is_2d=True, **fit_kwargs), is_2d=True
        )
        two_d_reason = (
            "slices of the volumes (nnU-Net's 2d): full-resolution spacing, patch (1, py, px) "
            "from a 2048^2-pixel physical square, kernel and stride 1 along axis 0"
        )
    median_shape = np.array(full.median_shape)
    patch, batch, topo, mem = (
        full.patch_size,
        full.batch_size,
        full.topology,
        full.estimated_memory_gb,
    )
    cls_shape, batch_by_memory = full.classification_shape, full.batch_limited_by_memory

    eta, eta_reason = scale_weights(fingerprint, spacing, topo, is_2d=is_2d)
    view_eta, view_eta_reason = classification_view_eta(fingerprint, full, is_2d=is_2d)

    ct = is_ct(fingerprint.channel_names)
    norms = []
    for stats in fingerprint.intensity:
        if ct:
            norms.append(
                ChannelNormalization(
                    "ct",
                    stats.percentile_00_5,
                    stats.percentile_99_5,
                    stats.mean,
                    max(stats.std, 1e-8),
                )
            )
        else:
            norms.append(ChannelNormalization("zscore", 0.0, 0.0, 0.0, 1.0))

    counts = np.array([fingerprint.diagnosis_counts.get(c, 0) for c in fingerprint.classes], float)
    # Diagnosis loss weights (docs/methods.md, "The classifier and the diagnosis loss"):
    # inverse class frequency, scaled so a balanced dataset gets weight 1 everywhere.
    class_weights = tuple(float(counts.sum() / (len(counts) * n)) if n > 0 else 0.0 for n in counts)
    for name, n in zip(fingerprint.classes, counts, strict=True):
        if n == 0:
            logger.warning("diagnosis '%s' has no training case; its weight is 0", name)

    loss_options, loss_reason = loss_parameters(fingerprint)
    medians = np.median(np.array([c.spacing for c in fingerprint.cases]), axis=0)
    coarse = [a for a in range(3) if not np.isclose(array_spacing[a], medians[a])]
    start_patch = (
        "2D images: one slice, a 2048^2-pixel physical square"
        if is_2d
        else "256^3-voxel physical cube"
    )
    reasons = {
        "target_spacing": (
            f"2D images: median in-plane spacing; z is the nominal {SLICE_SPACING_2D_MM:g} mm "
            "of the one slice"
            if is_2d
            else f"median spacing per axis; axis {coarse[0]} (z,y,x order) is >3x coarser and "
            "short, so its 10th-percentile spacing is used (anisotropy rule)"
            if coarse
            else "median spacing per axis (no axis triggers the anisotropy rule)"
        ),
        "patch_size": (
            f"{start_patch} clipped to the median shape "
            f"{tuple(int(v) for v in median_shape)}, the axis largest relative to it shrunk "
            f"one stride-step at a time until the estimate fits {memory_budget_gb:.2f} GB "
            f"({device_profile}); multiple of the total stride {topo.total_stride}"
        ),
        "batch_size": (
            "largest batch >= 2 within the memory budget (estimate includes the network switches)"
            if batch_by_memory
            else "capped so one batch covers <= 5% of the dataset's voxels"
        )
        + f" (estimate {mem:.2f} GB)",
        "topology": (
            "2D images: kernel and stride 1 along z in every stage (3D layers acting as 2D); "
            if is_2d
            else ""
        )
        + (
            "pool an axis while its spacing is within 2x of the finest and >= 4 voxels remain; "
            "kernel 1 on axes still >2x coarser; features double per stage "
            f"from {base_features} up to {max_features}"
        ),
        "two_d": two_d_reason,
        "classification_shape": (
            "whole cropped median scan shrunk uniformly to at most one patch's voxels, "
            "no axis below 16 voxels (or the scan's size), multiple of the total stride"
            if has_cls
            else "no diagnosis classes: no classification view"
        ),
        "eta": eta_reason,
        "view_eta": view_eta_reason,
        "transpose_forward": (
            "2D images: axis 0 is the one slice; order kept"
            if is_2d
            else "array axes already have the coarsest first"
            if order == (0, 1, 2)
            else f"array axis {order[0]} is the coarsest: moved first, order {order}"
        ),
        "normalization": (
            "CT: clip to the 0.5/99.5 percentiles of lesion + body samples, then their mean/std"
            if ct
            else "non-CT channels: per-image z-score"
        ),
        "loss_weights": (
            "l_seg 1, l_cls 1 (0 without classes), l_ta 10 on the normalised task-aware loss "
            "(DeepSC-COVID eq. 10; chosen by measurement: docs/training.md, 'The joint loss')"
        ),
        "loss": loss_reason,
        "lowres": lowres_reason,
        "class_weights": (
            "inverse class frequency N / (C * n_c) (DeepSC-COVID eq. 9); 0 for absent classes"
        ),
        "case_counts": "cases with a mask, a diagnosis, both: a missing reference is masked "
        "out of its task's loss per case, never scored against an empty mask",
    }

    return Plan(
        channel_names=fingerprint.channel_names,
        labels=fingerprint.labels,
        classes=fingerprint.classes,
        target_spacing=spacing,
        median_shape=tuple(int(v) for v in median_shape),  # type: ignore[arg-type]
        patch_size=patch,
        batch_size=batch,
        classification_shape=cls_shape,
        topology=topo,
        eta=eta,
        view_eta=view_eta,
        normalization=tuple(norms),
        loss_weights=LossWeights(seg=1.0, cls=1.0 if has_cls else 0.0, task_aware=10.0),
        loss=loss_options,
        class_weights=class_weights,
        device_profile=device_profile,
        memory_budget_gb=memory_budget_gb,
        estimated_memory_gb=mem,
        transpose_forward=order,
        configuration="2d" if is_2d else "fullres",
        is_2d=is_2d,
        lowres=lowres,
        two_d=two_d,
        network=network,
        reasons=reasons,
        case_counts=case_counts(fingerprint),
    )


def usable_budget_gb(device_gb: float) -> float:
    """The memory budget for a CUDA device of ``device_gb`` GB (total memory).

    The budget bounds the memory estimate (``resolution.estimate_memory_gb``), which counts
    only the activations a training step keeps for backward. Two things on the device are
    not in it, so they are taken off first (docs/planning.md, "Budget"):

    - ``CUDA_RESERVE_GB`` (1.5 GB) for what does not grow with the patch: the CUDA context
      with the cuDNN and cuBLAS handles (0.3-0.8 GB, outside torch's allocator) and the
      network's weights, gradients, optimiser state and autocast's float16 weight copies
      (GPU plans have 20-42 M parameters, at up to 18 bytes each with Adam: <= 0.75 GB);
    - then ``CUDA_WORKSPACE_FRACTION`` (10%) of the rest for what grows with it: cuDNN
      workspaces, transient gradient buffers and the caching allocator's rounding.

    With these, budget 8 GB (nnU-Net's default target, which the estimate is calibrated
    to) needs a 10.4 GB device, as nnU-Net asks for at least 10 GB for its default plans.

    Raises:
        ValueError: the device is no larger than the reserve.
    """
    budget = (device_gb - CUDA_RESERVE_GB) * (1.0 - CUDA_WORKSPACE_FRACTION)
    if budget <= 0:
        raise ValueError(
            f"a {device_gb:.1f} GB device leaves no memory for training after the "
            f"{CUDA_RESERVE_GB:g} GB reserve for the CUDA context, weights and optimiser "
            "state; give a budget with autojoint_plan --gpu-memory-gb G, or plan on a "
            "machine without a GPU for the CPU profile."
        )
    return budget


def detect_memory_budget(gpu_memory_gb: float | None) -> tuple[float, str]:
    """Memory budget (GB) and device profile of the plan.

    ``--gpu-memory-gb`` is the budget itself, used as given (it is what tests and peer
    benchmarks compare against nnU-Net's ``-gpu_memory_target``); else the total memory of
    CUDA device 0 less the headroom of :func:`usable_budget_gb`; else the CPU profile.

    Raises:
        ValueError: the detected device is too small for any budget.
    """
    if gpu_memory_gb is not None:
        return gpu_memory_gb, f"gpu ({gpu_memory_gb:g} GB, given)"
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        total = props.total_memory / 1024**3
        budget = usable_budget_gb(total)
        logger.info(
            "CUDA device 0 (%s): %.1f GB, planning for a budget of %.1f GB (%.1f GB reserved "
            "for the CUDA context, weights and optimiser state, %d%% of the rest for "
            "workspace)",
            props.name,
            total,
            budget,
            CUDA_RESERVE_GB,
            round(100 * CUDA_WORKSPACE_FRACTION),
        )
        return budget, f"gpu ({props.name}, {total:.1f} GB, budget {budget:.1f} GB)"
    return CPU_PROFILE_BUDGET_GB, "cpu"
