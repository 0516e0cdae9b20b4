"""The joint network: a plan-built U-Net with deep supervision plus a whole-scan classifier.

One segmentation U-Net runs on both views of a case (the full-resolution patch and the
whole-scan classification view). Its lesion probability on the whole-scan view,
concatenated with that view's image, feeds the classification subnet (DeepSC-COVID,
METHODS.md section 1), so the diagnosis is made from every lesion of the scan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from autojoint.networks.blocks import LAYERS_3D, LayerTypes, ResidualUnit, StackedConvs
from autojoint.planning.schema import Plan, Topology


class SegmentationUNet(nn.Module):
    """U-Net whose every decoder level (and the bottleneck) emits logits S_i.

    Shape:
        input ``(B, C, Z, Y, X)`` with spatial sizes divisible by the total stride;
        output list of ``(B, K, Z_i, Y_i, X_i)``, finest scale first.
    """

    def __init__(
        self, topology: Topology, in_channels: int, num_classes: int, layers: LayerTypes = LAYERS_3D
    ) -> None:
        super().__init__()
        feats = topology.features_per_stage
        self.encoder = nn.ModuleList()
        prev = in_channels
        for f, k, st in zip(feats, topology.kernel_sizes, topology.strides, strict=True):
            self.encoder.append(StackedConvs(layers, prev, f, k, st))
            prev = f
        self.upsample = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for s in range(topology.num_stages - 1, 0, -1):
            stride = topology.strides[s]
            self.upsample.append(layers.transposed_conv(feats[s], feats[s - 1], stride, stride))
            self.decoder.append(
                StackedConvs(
                    layers,
                    2 * feats[s - 1],
                    feats[s - 1],
                    topology.kernel_sizes[s - 1],
                    tuple(1 for _ in stride),
                )
            )
        # Heads ordered coarse (bottleneck) to fine, reversed in forward.
        self.heads = nn.ModuleList(
            [layers.conv(feats[s], num_classes, 1) for s in range(topology.num_stages - 1, -1, -1)]
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        outputs = [self.heads[0](x)]
        for i, (up, dec) in enumerate(zip(self.upsample, self.decoder, strict=True)):
            x = dec(torch.cat([up(x), skips[-(i + 2)]], dim=1))
            outputs.append(self.heads[i + 1](x))
        return outputs[::-1]


def fuse_scales(scale_logits: Sequence[torch.Tensor], eta: Sequence[float]) -> torch.Tensor:
    """Eq. 1/3: fused logits sum_i eta_i * UP(S_i); sigmoid/softmax of it is the final mask.

    Shape:
        scale_logits: finest first, each ``(B, K, ...)``; returns the finest's shape.
    """
    size = scale_logits[0].shape[2:]
    fused = eta[0] * scale_logits[0]
    for w, s in zip(eta[1:], scale_logits[1:], strict=True):
        fused = fused + w * F.interpolate(
            s, size=size, mode="trilinear" if s.ndim == 5 else "bilinear", align_corners=False
        )
    return fused


class ClassificationNet(nn.Module):
    """Residual encoder over the whole-scan view; multi-level GAP -> one FC layer (eq. 4).

    Shape:
        input ``(B, C_in, Z, Y, X)`` -> logits ``(B, num_classes)`` and the unit feature maps.
    """

    def __init__(
        self,
        in_channels: int,
        widths: Sequence[int],
        num_classes: int,
        strides: Sequence[Sequence[int]],
        layers: LayerTypes = LAYERS_3D,
    ) -> None:
        super().__init__()
        self.units = nn.ModuleList()
        prev = in_channels
        for w, s in zip(widths, strides, strict=True):
            self.units.append(ResidualUnit(layers, prev, w, s))
            prev = w
        self.widths = tuple(widths)
        self.fc = nn.Linear(sum(widths), num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats = []
        for unit in self.units:
            x = unit(x)
            feats.append(x)
        pooled = torch.cat([f.flatten(2).mean(dim=2) for f in feats], dim=1)
        return self.fc(pooled), feats

    def evidence_maps(
        self, feats: Sequence[torch.Tensor], class_index: torch.Tensor
    ) -> list[torch.Tensor]:
        """Eq. 5: V_m = sum_k F_m,k * w_m^{k,j} for the class j of each sample.

        Shape:
            class_index ``(B,)``; returns per unit ``(B, 1, Z_m, Y_m, X_m)``.
        """
        maps, start = [], 0
        for f, w in zip(feats, self.widths, strict=True):
            weight = self.fc.weight[class_index, start : start + w]  # (B, w)
            view = (-1, w) + (1,) * (f.ndim - 2)
            maps.append((f * weight.view(view)).sum(dim=1, keepdim=True))
            start += w
        return maps


@dataclass
class JointOutput:
    """Outputs of one joint forward pass (lists are finest scale first)."""

    patch_scales: list[torch.Tensor]
    view_scales: list[torch.Tensor] | None
    class_logits: torch.Tensor | None
    class_features: list[torch.Tensor] | None


class JointNet(nn.Module):
    """Segmentation U-Net shared by both views, plus the classification subnet."""

    def __init__(self, plan: Plan, layers: LayerTypes = LAYERS_3D) -> None:
        super().__init__()
        in_ch = len(plan.channel_names)
        self.eta = tuple(plan.eta)
        self.seg = SegmentationUNet(plan.topology, in_ch, plan.num_seg_classes, layers)
        self.cls: ClassificationNet | None = None
        if plan.has_diagnosis:
            feats = plan.topology.features_per_stage
            widths = [feats[min(i, len(feats) - 1)] * 2 for i in range(3)]
            strides = [(2, 2, 2)] * 3
            # Input: the view's image channels plus the predicted lesion probability.
            self.cls = ClassificationNet(in_ch + 1, widths, len(plan.classes), strides, layers)

    def lesion_probability(self, view_scales: Sequence[torch.Tensor]) -> torch.Tensor:
        """P(any lesion) per voxel of the fused map: 1 - P(background)."""
        fused = fuse_scales(view_scales, self.eta)
        return 1.0 - torch.softmax(fused, dim=1)[:, :1]

    def classify(
        self, view: torch.Tensor
    ) -> tuple[list[torch.Tensor], torch.Tensor, list[torch.Tensor]]:
        """Segment the whole-scan view and diagnose from image + lesion map."""
        if self.cls is None:
            raise RuntimeError("this plan has no diagnosis classes; the network has no classifier.")
        view_scales = self.seg(view)
        logits, feats = self.cls(torch.cat([view, self.lesion_probability(view_scales)], dim=1))
        return view_scales, logits, feats

    def forward(self, patch: torch.Tensor, view: torch.Tensor | None = None) -> JointOutput:
        patch_scales = self.seg(patch)
        if view is None or self.cls is None:
            return JointOutput(patch_scales, None, None, None)
        view_scales, logits, feats = self.classify(view)
        return JointOutput(patch_scales, view_scales, logits, feats)
