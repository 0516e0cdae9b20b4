"""Grad-CAM evidence maps: explanations for every network configuration.

The FC-weight class activation map (CAM, ``ClassificationNet.evidence_maps``; docs/methods.md,
"Evidence maps: CAM and Grad-CAM") needs global average
pooling straight into the FC layer. Grad-CAM (Selvaraju et al. 2017) only needs gradients:
for the predicted class c and the feature maps A_k of a chosen layer,

    alpha_k = mean over voxels of d y_c / d A_k,   L = ReLU(sum_k alpha_k A_k),

upsampled to the classification view. For the classifier's last unit this equals the ReLU
of that unit's CAM divided by its voxel count (GAP is linear), which the tests use as a
known answer. Any stage of the segmentation encoder (which the diagnosis also flows through)
can be chosen instead, so MultiR-Net's "Grad-CAM maps agree with the masks" is reproducible.

Gradients are needed, so this runs under ``torch.enable_grad()`` even when the caller is in
``torch.no_grad()``; it must not be called inside ``torch.inference_mode()``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from autojoint.networks.joint_net import JointNet
from autojoint.runtime.devices import subnormals_flushed

GRADCAM_TARGETS = ("classifier", "encoder")


@dataclass(frozen=True)
class GradCamResult:
    """Grad-CAM of one batch: ``maps`` ``(B, 1, *view spatial)`` (>= 0, unnormalised),
    the ``logits`` ``(B, classes)`` and the explained ``class_index`` ``(B,)``."""

    maps: torch.Tensor
    logits: torch.Tensor
    class_index: torch.Tensor


def _target_module(net: JointNet, target: str, stage: int) -> torch.nn.Module:
    if target == "classifier":
        if net.cls is None:
            raise RuntimeError("this network has no classifier; nothing to explain.")
        units = net.cls.units
    elif target == "encoder":
        if net.cls is not None and net.options.classifier_input == "image":
            raise ValueError(
                "network.classifier_input is 'image': the diagnosis does not read the "
                "segmentation encoder, so its Grad-CAM is undefined; use target 'classifier'."
            )
        units = net.seg.encoder
    else:
        raise ValueError(f"Grad-CAM target must be one of {GRADCAM_TARGETS}, got {target!r}.")
    if not -len(units) <= stage < len(units):
        raise ValueError(f"{target} has {len(units)} stages; stage {stage} does not exist.")
    return units[stage]


@subnormals_flushed()
def grad_cam(
    net: JointNet,
    view: torch.Tensor,
    *,
    target: str = "classifier",
    stage: int = -1,
    class_index: torch.Tensor | None = None,
) -> GradCamResult:
    """Grad-CAM of ``class_index`` (default: the predicted class) for the whole-scan ``view``.

    Args:
        target: ``"classifier"`` (a unit of the classification subnet) or ``"encoder"`` (a
            stage of the segmentation U-Net's encoder, on the view's pass).
        stage: index into that list (``-1`` = deepest).

    With iterative refinement the encoder runs once per pass; the last pass's activation is
    explained (the one the diagnosis reads). Samples are independent (instance norm), so one
    backward pass of the summed scores gives every sample's gradients.
    """
    module = _target_module(net, target, stage)
    captured: list[torch.Tensor] = []

    def keep(_module: torch.nn.Module, _inputs: object, output: torch.Tensor) -> None:
        captured.append(output)

    handle = module.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            # Detaching the lesion input is a training choice: the diagnosis still depends
            # on the encoder through the lesion map, so its explanation keeps that gradient.
            _, logits, _ = net.classify(view, detach_lesion_input=False)
            activation = captured[-1]
            chosen = logits.argmax(dim=1) if class_index is None else class_index
            score = logits.gather(1, chosen.view(-1, 1)).sum()
            (grads,) = torch.autograd.grad(score, activation)
    finally:
        handle.remove()
    spatial = tuple(range(2, activation.ndim))
    alpha = grads.mean(dim=spatial, keepdim=True)
    cam = F.relu((alpha * activation).sum(dim=1, keepdim=True)).detach()
    mode = "trilinear" if cam.ndim == 5 else "bilinear"
    cam = F.interpolate(cam, size=tuple(view.shape[2:]), mode=mode, align_corners=False)
    return GradCamResult(cam.clamp_min(0.0), logits.detach(), chosen.detach())
