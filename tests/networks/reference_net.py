"""Frozen copy of the joint network as it was before the ablation switches (issue 4).

Used only to prove that a plan with every switch off builds the same parameters (names,
order, initial values for a seed) and computes bit-identical outputs, so checkpoints and
results from before the switches stay valid. Do not update this file when the network
changes: it is the baseline.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from autojoint.networks.blocks import ResidualUnit, StackedConvs
from autojoint.planning.schema import Plan


class _Layers:
    """The 3D layer types of the time, spelled out (duck-typed LayerTypes)."""

    conv = nn.Conv3d
    transposed_conv = nn.ConvTranspose3d
    norm = nn.InstanceNorm3d
    nonlin = nn.LeakyReLU


_L = _Layers()


class RefUNet(nn.Module):
    def __init__(self, plan: Plan, in_channels: int) -> None:
        super().__init__()
        topology = plan.topology
        feats = topology.features_per_stage
        self.encoder = nn.ModuleList()
        prev = in_channels
        for f, k, st in zip(feats, topology.kernel_sizes, topology.strides, strict=True):
            self.encoder.append(StackedConvs(_L, prev, f, k, st))
            prev = f
        self.upsample = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for s in range(topology.num_stages - 1, 0, -1):
            stride = topology.strides[s]
            self.upsample.append(nn.ConvTranspose3d(feats[s], feats[s - 1], stride, stride))
            self.decoder.append(
                StackedConvs(
                    _L, 2 * feats[s - 1], feats[s - 1], topology.kernel_sizes[s - 1], (1, 1, 1)
                )
            )
        self.heads = nn.ModuleList(
            [
                nn.Conv3d(feats[s], plan.num_labels, 1)
                for s in range(topology.num_stages - 1, -1, -1)
            ]
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


class RefClassifier(nn.Module):
    def __init__(self, in_channels: int, widths: list[int], num_classes: int) -> None:
        super().__init__()
        self.units = nn.ModuleList()
        prev = in_channels
        for w in widths:
            self.units.append(ResidualUnit(_L, prev, w, (2, 2, 2)))
            prev = w
        self.fc = nn.Linear(sum(widths), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = []
        for unit in self.units:
            x = unit(x)
            feats.append(x)
        return self.fc(torch.cat([f.flatten(2).mean(dim=2) for f in feats], dim=1))


class RefJointNet(nn.Module):
    def __init__(self, plan: Plan) -> None:
        super().__init__()
        in_ch = len(plan.channel_names)
        self.eta = tuple(plan.eta)
        self.seg = RefUNet(plan, in_ch)
        feats = plan.topology.features_per_stage
        widths = [feats[min(i, len(feats) - 1)] * 2 for i in range(3)]
        self.cls = RefClassifier(in_ch + 1, widths, len(plan.classes))

    def forward(
        self, patch: torch.Tensor, view: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        patch_scales = self.seg(patch)
        view_scales = self.seg(view)
        size = view_scales[0].shape[2:]
        fused = self.eta[0] * view_scales[0]
        for w, s in zip(self.eta[1:], view_scales[1:], strict=True):
            fused = fused + w * F.interpolate(s, size=size, mode="trilinear", align_corners=False)
        lesion = 1.0 - torch.softmax(fused, dim=1)[:, :1]
        return patch_scales, view_scales, self.cls(torch.cat([view, lesion], dim=1))
