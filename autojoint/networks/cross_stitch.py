"""Cross-task feature stem (DeepSC-COVID; docs/methods.md, "References").

Two un-shared inception blocks, one on the segmentation input (the patch) and one on the
classification input (the whole-scan view), then a cross-stitch unit with learnable
scalars:

    F_seg = w_seg1 * I_seg + w_cls2 * CROP(I_cls, box)
    F_cls = w_cls1 * I_cls

Choices the paper leaves open (documented in docs/architecture.md, "Network switches"):
- The patch is a small part of the case, the view is the whole case resampled to the plan's
  classification shape. The patch therefore takes the view's features *at its own place*:
  ``CROP`` samples ``I_cls`` (trilinear, half-voxel centres as ``resample_image`` maps the
  case onto the view) inside the patch's ``box`` onto the patch's grid, zero where the box
  leaves the case (a patch overhanging a small case). The box is given per sample in
  normalised view coordinates (:func:`crop_box`): row 0 holds, per spatial axis, where the
  patch's first face lies, row 1 where its last face lies, 0 and 1 being the view's
  (= the cropped case's) outer faces. A first face beyond the last means the patch runs
  backwards relative to the view: a mirrored patch or a mirrored view (training
  augmentation, test-time mirroring), so the crop comes out mirrored the same way.
- The view takes no patch features. The diagnosis is made from the view alone at
  inference (``JointNet.classify(view)``: one pass, no patch), so training does the same
  and ``forward(patch, view, box).class_logits == classify(view)``. A patch pasted into
  its box of the view would cover a few percent of it, move with the random patch and be
  missing at inference. ``w_seg2`` stays in the 2x2 weight (checkpoints keep their shape)
  and receives no gradient.
- A missing input (segmentation-only forward, sliding-window prediction of a patch alone, a
  diagnosis of the view alone) contributes zero features: ``F_seg = w_seg1 * I_seg``.
  The next layer is a convolution followed by instance norm, which removes any constant
  scale, so this is the same as using ``I_seg`` alone. A view without a box is refused.
- "3x3" means the plan's first-stage kernel (e.g. ``(1, 3, 3)`` on anisotropic data), the
  "5x5" branch is two of them, the pooling branch is a stride-1 max-pool of that size
  followed by a 1x1 conv. Every conv is followed by GroupNorm and ReLU.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from autojoint.networks.blocks import LAYERS_3D, LayerTypes

# Cross-stitch initialisation: mostly the own task's features, a little of the other's.
STITCH_SELF_INIT = 0.9
STITCH_OTHER_INIT = 0.1


def group_count(channels: int, max_groups: int = 8) -> int:
    """GroupNorm groups: the most groups (at most ``max_groups``) of at least two channels
    each that divide ``channels``; 1 when no such split exists."""
    for g in range(min(max_groups, channels // 2), 1, -1):
        if channels % g == 0:
            return g
    return 1


class ConvGroupNormReLU(nn.Sequential):
    """conv (stride 1, 'same' padding) -> GroupNorm -> ReLU."""

    def __init__(self, layers: LayerTypes, in_ch: int, out_ch: int, kernel: Sequence[int]) -> None:
        super().__init__(
            layers.conv(in_ch, out_ch, tuple(kernel), 1, padding=tuple(k // 2 for k in kernel)),
            nn.GroupNorm(group_count(out_ch), out_ch),
            nn.ReLU(inplace=True),
        )


class InceptionBlock(nn.Module):
    """Four parallel branches with growing receptive fields, concatenated:
    1x1 | k | k then k (a 5x5-like field) | max-pool k then 1x1.

    Shape:
        ``(B, in_ch, *S) -> (B, 4 * branch_ch, *S)`` for odd kernel sizes ``k``.
    """

    def __init__(
        self,
        layers: LayerTypes,
        in_ch: int,
        branch_ch: int,
        kernel: Sequence[int],
    ) -> None:
        super().__init__()
        ones = tuple(1 for _ in kernel)
        self.branch_1 = ConvGroupNormReLU(layers, in_ch, branch_ch, ones)
        self.branch_3 = ConvGroupNormReLU(layers, in_ch, branch_ch, kernel)
        self.branch_5 = nn.Sequential(
            ConvGroupNormReLU(layers, in_ch, branch_ch, kernel),
            ConvGroupNormReLU(layers, branch_ch, branch_ch, kernel),
        )
        self.branch_pool = nn.Sequential(
            layers.pool(tuple(kernel), stride=1, padding=tuple(k // 2 for k in kernel)),
            ConvGroupNormReLU(layers, in_ch, branch_ch, ones),
        )
        self.out_channels = 4 * branch_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [self.branch_1(x), self.branch_3(x), self.branch_5(x), self.branch_pool(x)], dim=1
        )


def crop_box(features: torch.Tensor, box: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Sample each sample's ``features`` inside its ``box`` onto a grid of ``size`` voxels.

    Along an axis whose box is ``(a, b)``, output voxel ``k`` of ``P = size[axis]`` lies at
    the normalised coordinate ``u = a + (b - a) * (k + 1/2) / P``. Voxel ``j`` of the ``M``
    feature voxels spans ``[j, j + 1] / M`` with its centre at ``(j + 1/2) / M``: the
    half-voxel convention of ``resample_image`` (skimage) and of
    ``F.interpolate(align_corners=False)``. Values are (tri/bi)linear between voxel centres,
    the outermost voxel's value between its centre and the face, and zero for ``u`` outside
    ``[0, 1]`` (no features beyond the case). With ``b < a`` the crop comes out mirrored
    along that axis. A box ``[s / N, (s + P) / N]`` of a grid of ``N`` voxels samples
    exactly the centres of voxels ``s .. s + P - 1`` of that grid resampled to
    ``features``'s extent, so a whole case tiled into boxes reassembles
    ``resize(features, N)``.

    Args:
        features: ``(B, C, *S)`` maps covering the normalised box ``[0, 1]^D``.
        box: ``(B, 2, D)``: per sample, the coordinates of the crop's first (row 0) and
            last (row 1) faces along each spatial axis, in ``features``'s axis order.
        size: output spatial size ``(D,)``.

    Returns:
        ``(B, C, *size)`` in ``features``'s dtype.

    Raises:
        ValueError: ``box`` does not have shape ``(B, 2, D)`` or ``size`` has not D entries.
    """
    batch, ndim = features.shape[0], features.ndim - 2
    size = tuple(int(s) for s in size)
    if tuple(box.shape) != (batch, 2, ndim) or len(size) != ndim:
        raise ValueError(
            f"crop box must have shape ({batch}, 2, {ndim}) and size {ndim} entries for "
            f"features {tuple(features.shape)}, got box {tuple(box.shape)} and size {size}."
        )
    box = box.to(device=features.device, dtype=features.dtype)
    grid_axes: list[torch.Tensor] = []
    inside = torch.ones((batch, 1, *size), dtype=features.dtype, device=features.device)
    for axis, p in enumerate(size):
        t = (torch.arange(p, dtype=box.dtype, device=box.device) + 0.5) / p
        u = box[:, 0, axis, None] + (box[:, 1, axis] - box[:, 0, axis])[:, None] * t  # (B, P)
        shape = [batch] + [1] * ndim
        shape[1 + axis] = p
        grid_axes.append((2 * u - 1).view(shape).expand(batch, *size))
        inside = inside * ((u >= 0) & (u <= 1)).to(features.dtype).view(shape).unsqueeze(1)
    # grid_sample's grid holds (x, y[, z]): the last spatial axis first. With
    # align_corners=False, -1 and 1 are the outer faces of the outermost voxels.
    grid = torch.stack(grid_axes[::-1], dim=-1)
    sampled = F.grid_sample(
        features, grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    return sampled * inside


class CrossStitch(nn.Module):
    """Learnable 2x2 mixing of the segmentation and classification stem features.

    ``weight`` rows are the outputs (seg, cls), columns the inputs (seg, cls):
    ``[[w_seg1, w_cls2], [w_seg2, w_cls1]]``. Either input may be ``None`` (absent: zero
    features). The patch takes the view's features cropped to its ``box``
    (:func:`crop_box`); the view takes its own features only (``w_seg2`` is unused, see
    the module docstring).

    Shape:
        i_seg ``(B, C, *S_patch)``, i_cls ``(B, C, *S_view)``, box ``(B, 2, D)``
        -> F_seg ``(B, C, *S_patch)``, F_cls ``(B, C, *S_view)``.
    """

    def __init__(
        self, self_init: float = STITCH_SELF_INIT, other_init: float = STITCH_OTHER_INIT
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor([[self_init, other_init], [other_init, self_init]]))

    def forward(
        self,
        i_seg: torch.Tensor | None,
        i_cls: torch.Tensor | None,
        box: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Mix the stem features; ``box`` is required when both inputs are given.

        Raises:
            ValueError: inputs of different batch size or channels, or a view without the
                patch's box.
        """
        w = self.weight
        f_seg = f_cls = None
        if i_seg is not None:
            f_seg = w[0, 0] * i_seg
            if i_cls is not None:
                f_seg = f_seg + w[0, 1] * crop_box(
                    i_cls, _required_box(i_seg, i_cls, box), i_seg.shape[2:]
                )
        if i_cls is not None:
            f_cls = w[1, 1] * i_cls
        return f_seg, f_cls


def _required_box(
    i_seg: torch.Tensor, i_cls: torch.Tensor, box: torch.Tensor | None
) -> torch.Tensor:
    if i_seg.shape[:2] != i_cls.shape[:2]:
        raise ValueError(
            "cross-stitch inputs must share batch size and channels, got "
            f"{tuple(i_seg.shape)} and {tuple(i_cls.shape)}."
        )
    if box is None:
        raise ValueError(
            "the cross-stitch stem mixes the view's features in at the patch's own place and "
            "needs where the patch lies in the view: pass its box (B, 2, D) in normalised "
            "view coordinates (the loader's 'patch_box'; network_probabilities passes each "
            "tile's), or no view."
        )
    return box


class CrossTaskStem(nn.Module):
    """Un-shared inception blocks for the two inputs plus the cross-stitch unit.

    Shape:
        seg input ``(B, C, *S_patch)``, cls input ``(B, C, *S_view)`` (either may be None),
        box ``(B, 2, D)`` -> ``F_seg (B, out_channels, *S_patch)``,
        ``F_cls (B, out_channels, *S_view)``.
    """

    def __init__(
        self,
        in_channels: int,
        branch_channels: int,
        kernel: Sequence[int],
        layers: LayerTypes = LAYERS_3D,
    ) -> None:
        super().__init__()
        self.seg_block = InceptionBlock(layers, in_channels, branch_channels, kernel)
        self.cls_block = InceptionBlock(layers, in_channels, branch_channels, kernel)
        self.stitch = CrossStitch()
        self.out_channels = self.seg_block.out_channels

    def forward(
        self,
        seg_input: torch.Tensor | None,
        cls_input: torch.Tensor | None,
        box: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``box``: where each patch lies in its view (see :func:`crop_box`); required
        when both inputs are given."""
        i_seg = None if seg_input is None else self.seg_block(seg_input)
        i_cls = None if cls_input is None else self.cls_block(cls_input)
        return self.stitch(i_seg, i_cls, box)
