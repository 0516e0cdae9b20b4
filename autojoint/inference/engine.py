"""The inference engine: run one or more networks on one preprocessed case.

:func:`run_networks` is the one place that turns a preprocessed case into probabilities; the
predictor (``autojoint_predict``) and the trainer's full-case validation both call it, so
the scores the trainer reports come from the computation the predictions use: the
sliding-window segmentation at the plan's spacing (Gaussian-weighted tiles, mirroring
test-time augmentation, the whole-scan view as context with the cross-stitch stem), the
mean of the networks' probabilities, and each network's diagnosis probabilities from one
pass over the whole-scan view. By default (``precision="auto"``,
``runtime.devices.mixed_precision``) the networks run under float16 autocast on CUDA, as they
trained, under bfloat16 autocast on a CPU with native bfloat16 instructions (about 2x
faster; docs/benchmarks.md "CPU options"), elsewhere in float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from autojoint.inference.sliding_window import network_probabilities
from autojoint.networks.joint_net import JointNet
from autojoint.planning.schema import Plan
from autojoint.preprocessing.preprocess import PreprocessedCase
from autojoint.runtime.devices import mixed_precision, subnormals_flushed

__all__ = ["NetworkProbabilities", "run_networks"]


@dataclass(frozen=True)
class NetworkProbabilities:
    """What the networks say about one preprocessed case.

    Shape:
        segmentation: ``(K, Z, Y, X)`` float32 on the preprocessed grid (the mean over the
        networks; K = ``plan.num_labels``), None when not asked for.
        diagnosis: ``(F, num_classes)`` float32, one row per network, None when the plan
        has no diagnosis classes.
    """

    segmentation: np.ndarray | None
    diagnosis: np.ndarray | None


@torch.no_grad()
@subnormals_flushed()
def run_networks(
    nets: Sequence[JointNet],
    pre: PreprocessedCase,
    plan: Plan,
    device: torch.device,
    *,
    mirror_axes: Sequence[Sequence[int]] | None = None,
    step_fraction: float = 0.5,
    tile_batch: int = 1,
    segment: bool = True,
    precision: str = "auto",
) -> NetworkProbabilities:
    """Segmentation and diagnosis probabilities of ``nets`` (in eval mode) for one
    preprocessed case.

    Args:
        nets: networks of one plan (the folds of an ensemble, or the network in training).
        pre: the case preprocessed with ``plan``: ``pre.data`` (at the plan's spacing, in
            its axis order) is segmented, ``pre.cls_data`` (the whole-scan view) diagnosed.
        mirror_axes: per network, the spatial axes to mirror for test-time augmentation
            (what the network's training mirrored); None = no mirroring.
        step_fraction: sliding-window step as a fraction of the patch.
        tile_batch: tiles per forward pass.
        segment: False skips the sliding window (only the diagnosis is computed).
        precision: ``auto``, ``float32`` or ``bfloat16`` (``runtime.devices.autocast_dtype``).

    Shape:
        ``pre.data`` ``(C, Z, Y, X)`` -> segmentation ``(K, Z, Y, X)``, as in
        :class:`NetworkProbabilities`.
    """
    axes = [()] * len(nets) if mirror_axes is None else [tuple(a) for a in mirror_axes]
    view = torch.from_numpy(pre.cls_data[None]).to(device) if plan.has_diagnosis else None
    # With the cross-stitch stem, each window mixes in the case's whole-scan view at the
    # window's own place (its box in the case), as in training; without it the context
    # is ignored.
    context = view if plan.network.cross_stitch else None
    total = np.zeros((plan.num_labels, *pre.data.shape[1:]), np.float32) if segment else None
    diagnosis = []
    for net, net_axes in zip(nets, axes, strict=True):
        with mixed_precision(device, precision):
            if total is not None:
                total += network_probabilities(
                    net,
                    pre.data,
                    plan.patch_size,
                    plan.num_labels,
                    context=context,
                    step_fraction=step_fraction,
                    device=device,
                    tile_batch=tile_batch,
                    mirror_axes=net_axes,
                )
            if view is not None:
                _, logits, _ = net.classify(view)
                diagnosis.append(torch.softmax(logits.float(), dim=1)[0].cpu().numpy())
    return NetworkProbabilities(
        segmentation=None if total is None else total / len(nets),
        diagnosis=np.stack(diagnosis).astype(np.float32) if diagnosis else None,
    )
