"""Convolution building blocks; layer types are arguments so one code path serves 2D and 3D."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class LayerTypes:
    """The layer classes a network is built from (3D by default)."""

    conv: type[nn.Module] = nn.Conv3d
    transposed_conv: type[nn.Module] = nn.ConvTranspose3d
    norm: type[nn.Module] = nn.InstanceNorm3d
    nonlin: type[nn.Module] = nn.LeakyReLU
    pool: type[nn.Module] = nn.MaxPool3d


LAYERS_3D = LayerTypes()
LAYERS_2D = LayerTypes(nn.Conv2d, nn.ConvTranspose2d, nn.InstanceNorm2d, nn.LeakyReLU, nn.MaxPool2d)


def resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """(Tri/bi)linear interpolation of ``(B, C, *spatial)`` to ``size`` (align_corners False)."""
    mode = "trilinear" if x.ndim == 5 else "bilinear"
    return F.interpolate(x, size=tuple(size), mode=mode, align_corners=False)


class ConvNormAct(nn.Module):
    """conv -> instance norm (affine) -> LeakyReLU; 'same' padding for odd kernels."""

    def __init__(
        self,
        layers: LayerTypes,
        in_ch: int,
        out_ch: int,
        kernel: Sequence[int],
        stride: Sequence[int],
    ) -> None:
        super().__init__()
        self.conv = layers.conv(
            in_ch, out_ch, tuple(kernel), tuple(stride), padding=tuple(k // 2 for k in kernel)
        )
        self.norm = layers.norm(out_ch, affine=True)
        self.act = layers.nonlin(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class StackedConvs(nn.Sequential):
    """Two ConvNormAct; only the first is strided (it does the downsampling)."""

    def __init__(
        self,
        layers: LayerTypes,
        in_ch: int,
        out_ch: int,
        kernel: Sequence[int],
        stride: Sequence[int],
    ) -> None:
        ones = tuple(1 for _ in kernel)
        super().__init__(
            ConvNormAct(layers, in_ch, out_ch, kernel, stride),
            ConvNormAct(layers, out_ch, out_ch, kernel, ones),
        )


class ResidualUnit(nn.Module):
    """Strided residual unit (two convs plus a 1x1 projection shortcut), as in the
    classification encoder of DeepSC-COVID."""

    def __init__(
        self,
        layers: LayerTypes,
        in_ch: int,
        out_ch: int,
        stride: Sequence[int],
        kernel: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        k = tuple(kernel) if kernel is not None else tuple(3 for _ in stride)
        self.body = nn.Sequential(
            ConvNormAct(layers, in_ch, out_ch, k, stride),
            layers.conv(out_ch, out_ch, k, 1, padding=tuple(v // 2 for v in k)),
            layers.norm(out_ch, affine=True),
        )
        self.skip = nn.Sequential(
            layers.conv(in_ch, out_ch, 1, tuple(stride)), layers.norm(out_ch, affine=True)
        )
        self.act = layers.nonlin(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.skip(x))


def init_weights(module: nn.Module, neg_slope: float = 1e-2) -> None:
    """He initialisation for LeakyReLU networks; biases zero."""
    for m in module.modules():
        if isinstance(m, nn.Conv3d | nn.Conv2d | nn.ConvTranspose3d | nn.ConvTranspose2d):
            nn.init.kaiming_normal_(m.weight, a=neg_slope)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
