"""Evidence maps of the predicted diagnosis, on the input grid, by a named method.

Methods live in one explicit registry (``EVIDENCE_METHODS``) so that ``--evidence NAME``
can offer more than the classifier's class activation map (CAM; docs/methods.md, "Evidence
maps: CAM and Grad-CAM") without touching the
predictor: a method takes the fold networks, the whole-scan view, the predicted class and
the preprocessed case, and returns a ``[0, 1]`` map on the input grid.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from autojoint.arrays.cropping import uncrop
from autojoint.inference.gradcam import grad_cam
from autojoint.inference.resample_back import resize_linear
from autojoint.networks.joint_net import JointNet
from autojoint.planning.schema import Plan
from autojoint.preprocessing.preprocess import PreprocessedCase, transpose_spatial
from autojoint.runtime.devices import subnormals_flushed

EvidenceMethod = Callable[[list[JointNet], torch.Tensor, int, PreprocessedCase, Plan], np.ndarray]

EVIDENCE_METHODS: dict[str, EvidenceMethod] = {}
DEFAULT_EVIDENCE = "cam"


def register_evidence(name: str) -> Callable[[EvidenceMethod], EvidenceMethod]:
    """Add an evidence method under ``name`` (the value of ``--evidence NAME``)."""

    def add(fn: EvidenceMethod) -> EvidenceMethod:
        if name in EVIDENCE_METHODS:
            raise ValueError(f"evidence method '{name}' is registered twice.")
        EVIDENCE_METHODS[name] = fn
        return fn

    return add


def get_evidence_method(name: str) -> EvidenceMethod:
    """The method registered as ``name``.

    Raises:
        ValueError: unknown name (the message lists the available ones).
    """
    if name not in EVIDENCE_METHODS:
        raise ValueError(
            f"unknown evidence method '{name}'; available: {', '.join(sorted(EVIDENCE_METHODS))}."
        )
    return EVIDENCE_METHODS[name]


def to_cropped_input_order(
    volumes: np.ndarray,
    pre: PreprocessedCase,
    plan: Plan,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Resample per-channel maps from network space (any grid covering the cropped scan,
    in the plan's axis order) to the cropped input grid in the input's array order,
    linearly, on ``device``.

    Shape:
        volumes ``(K, a, b, c)`` -> ``(K, *crop_shape)`` float32.
    """
    crop_shape = tuple(b - a for a, b in pre.bbox)
    fwd_crop_shape = tuple(crop_shape[a] for a in plan.transpose_forward)
    return transpose_spatial(
        resize_linear(volumes, fwd_crop_shape, device), plan.transpose_backward
    )


def evidence_on_input_grid(
    maps: list[torch.Tensor], pre: PreprocessedCase, plan: Plan
) -> np.ndarray:
    """Class activation maps of all classifier units (and folds), upsampled to the view,
    averaged, rectified and scaled to [0, 1] (as Grad-CAM displays are), then put on the
    input grid (0 outside the body crop).

    Shape:
        maps: each ``(1, 1, ...)`` at a unit's resolution -> ``pre.geometry.shape`` float32.
    """
    size = tuple(pre.cls_data.shape[1:])
    mode = "trilinear" if maps[0].ndim == 5 else "bilinear"
    up = [F.interpolate(m, size=size, mode=mode, align_corners=False)[0, 0] for m in maps]
    view = torch.relu(torch.stack(up).mean(dim=0)).cpu().numpy().astype(np.float32)
    peak = float(view.max())
    if peak > 0:
        view /= peak
    cropped = to_cropped_input_order(view[None], pre, plan, maps[0].device)[0]
    return uncrop(np.clip(cropped, 0.0, 1.0), pre.bbox, pre.geometry.shape)


@register_evidence("cam")
@torch.no_grad()
@subnormals_flushed()
def class_activation_evidence(
    nets: list[JointNet], view: torch.Tensor, class_index: int, pre: PreprocessedCase, plan: Plan
) -> np.ndarray:
    """The classifier's class activation maps (CAM) for ``class_index``, every unit and
    fold averaged (see :func:`evidence_on_input_grid`)."""
    predicted = torch.tensor([class_index], device=view.device)
    maps = []
    for net in nets:
        if net.cls is None:
            continue
        _, _, feats = net.classify(view)
        maps.extend(net.cls.evidence_maps(feats, predicted))
    return evidence_on_input_grid(maps, pre, plan)


@register_evidence("gradcam")
def grad_cam_evidence(
    nets: list[JointNet], view: torch.Tensor, class_index: int, pre: PreprocessedCase, plan: Plan
) -> np.ndarray:
    """Grad-CAM (``autojoint.inference.gradcam``) of ``class_index`` at the classifier's
    deepest unit, every fold averaged: works for any configuration, whatever the
    classifier's head looks like."""
    predicted = torch.tensor([class_index], device=view.device)
    maps = [grad_cam(net, view, class_index=predicted).maps for net in nets if net.cls is not None]
    return evidence_on_input_grid(maps, pre, plan)
