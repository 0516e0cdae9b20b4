"""MSD-Net's three blocks (docs/methods.md, "References") for 2D and 3D U-Nets.

- :class:`PyramidConvBlock` (PCB-k): k parallel depth-wise separable convolutions with kernel
  sizes 4k-1, 4k+3, ..., 8k-5 after encoder stage k; a residual sum keeps the channel count.
- :class:`ChannelAttentionFusion`: global average pooling of [encoder skip, decoder features]
  -> 1x1 conv -> sigmoid gives one weight per skip channel; the weighted skip is added to the
  decoder features.
- :class:`ResidualRefinementBlock`: 1x1 conv to the wanted channels, then a residual block
  summed with it.

In 3D a depth-wise k^3 kernel of size 27 would cost 27^3 multiply-adds per voxel and channel;
the pyramid's depth-wise part is therefore *spatially separable* (one 1D depth-wise conv per
axis, applied in sequence), so a kernel of size s costs 3s, and axes the plan does not
convolve along (kernel 1 in the topology, e.g. a coarse z axis) keep size 1. In 2D the same
code runs with two axes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from autojoint.networks.blocks import ConvNormAct, LayerTypes
from autojoint.planning.resolution import MAX_PYRAMID_LEVEL


def pyramid_kernel_sizes(level: int) -> tuple[int, ...]:
    """Kernel sizes of PCB-``level``: 4k-1, 4k+3, ..., 8k-5 (k of them; k = 1 gives (3,))."""
    if level < 1:
        raise ValueError(f"pyramid level must be >= 1, got {level}.")
    return tuple(range(4 * level - 1, 8 * level - 4, 4))


class SeparableDepthwise(nn.Module):
    """Depth-wise conv of size ``size`` along each axis with ``active`` True, one axis at a
    time, then a point-wise 1x1 conv: a depth-wise *separable* convolution."""

    def __init__(self, layers: LayerTypes, channels: int, size: int, active: Sequence[bool]):
        super().__init__()
        ndim = len(active)
        axes = []
        for axis, on in enumerate(active):
            if not on:
                continue
            kernel = tuple(size if a == axis else 1 for a in range(ndim))
            padding = tuple(size // 2 if a == axis else 0 for a in range(ndim))
            axes.append(
                layers.conv(channels, channels, kernel, 1, padding=padding, groups=channels)
            )
        self.depthwise = nn.Sequential(*axes)
        self.pointwise = layers.conv(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class PyramidConvBlock(nn.Module):
    """PCB-k: ``x + act(norm(sum of the k separable branches))``; channels unchanged.

    Args:
        level: k (encoder stage, 1-based), capped at :data:`MAX_PYRAMID_LEVEL`.
        stage_kernel: the topology's kernel of that stage; axes with kernel 1 are not
            convolved along (the plan decided they are too coarse).
    """

    def __init__(
        self, layers: LayerTypes, channels: int, level: int, stage_kernel: Sequence[int]
    ) -> None:
        super().__init__()
        active = [k > 1 for k in stage_kernel]
        self.kernel_sizes = pyramid_kernel_sizes(min(level, MAX_PYRAMID_LEVEL))
        self.branches = nn.ModuleList(
            [SeparableDepthwise(layers, channels, s, active) for s in self.kernel_sizes]
        )
        self.norm = layers.norm(channels, affine=True)
        self.act = layers.nonlin(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = self.branches[0](x)
        for branch in self.branches[1:]:
            total = total + branch(x)
        return x + self.act(self.norm(total))


class ChannelAttentionFusion(nn.Module):
    """Fuse an encoder skip into same-shape decoder features with channel weights.

    ``w = sigmoid(conv1x1(GAP(cat[skip, decoder])))`` (one weight per skip channel);
    output ``decoder + w * skip``.
    """

    def __init__(self, layers: LayerTypes, skip_channels: int, decoder_channels: int) -> None:
        super().__init__()
        if skip_channels != decoder_channels:
            raise ValueError(
                f"channel attention adds the weighted skip to the decoder features: channel "
                f"counts must match, got {skip_channels} and {decoder_channels}."
            )
        self.mix = layers.conv(skip_channels + decoder_channels, skip_channels, 1)

    def weights(self, skip: torch.Tensor, decoder: torch.Tensor) -> torch.Tensor:
        """Channel weights ``(B, C, 1, ...)`` in (0, 1)."""
        pooled = torch.cat([skip, decoder], dim=1).mean(
            dim=tuple(range(2, skip.ndim)), keepdim=True
        )
        return torch.sigmoid(self.mix(pooled))

    def forward(self, skip: torch.Tensor, decoder: torch.Tensor) -> torch.Tensor:
        return decoder + self.weights(skip, decoder) * skip


class ResidualRefinementBlock(nn.Module):
    """``y = conv1x1(x)``; output ``act(y + norm(conv(act(norm(conv(y))))))``."""

    def __init__(
        self, layers: LayerTypes, in_channels: int, out_channels: int, kernel: Sequence[int]
    ) -> None:
        super().__init__()
        ones = tuple(1 for _ in kernel)
        self.adjust = layers.conv(in_channels, out_channels, 1)
        self.body = nn.Sequential(
            ConvNormAct(layers, out_channels, out_channels, kernel, ones),
            layers.conv(
                out_channels, out_channels, tuple(kernel), 1, padding=tuple(k // 2 for k in kernel)
            ),
            layers.norm(out_channels, affine=True),
        )
        self.act = layers.nonlin(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.adjust(x)
        return self.act(y + self.body(y))
