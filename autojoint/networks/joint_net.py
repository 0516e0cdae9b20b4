"""The joint network: a plan-built U-Net with deep supervision plus a whole-scan classifier.

One segmentation U-Net runs on both views of a case (the full-resolution patch and the
whole-scan classification view). Its lesion probability on the whole-scan view,
concatenated with (or multiplied into) that view's image, feeds the classification subnet
(as in DeepSC-COVID), so the diagnosis is made from every lesion of the scan
(docs/methods.md, "Two views of one case").

The plan's ``network`` section switches on ablations taken from DeepSC-COVID and MultiR-Net:
reverse attention on the skips, the cross-task inception stem with a cross-stitch unit, the
multiplied classifier input, iterative refinement and the scale fusion (``softmax`` or
``sigmoid_sum``; :func:`fused_logits`) (docs/architecture.md, "Network switches");
``classifier_input="image"`` cuts the lesion map out of the diagnosis (a single-task
baseline); ``detach_lesion_input`` (on by default) keeps the map as input but stops the
diagnosis's gradient there, so the classifier cannot reshape the masks. With every switch off the
network is exactly the foundation one: same parameters, same names, same outputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from autojoint.networks.blocks import LAYERS_3D, LayerTypes, ResidualUnit, StackedConvs
from autojoint.networks.cross_stitch import CrossTaskStem
from autojoint.networks.fusion import fused_logits, fused_probabilities
from autojoint.networks.msd_blocks import (
    ChannelAttentionFusion,
    PyramidConvBlock,
    ResidualRefinementBlock,
)
from autojoint.networks.reverse_attention import apply_reverse_attention
from autojoint.planning.schema import (
    CLASSIFIER_INPUTS,
    FUSIONS,
    NetworkOptions,
    Plan,
    Topology,
    lesion_map_channels,
)


class SegmentationUNet(nn.Module):
    """U-Net whose every decoder level (and the bottleneck) emits logits S_i.

    Optional parts (all off by default):
        stem: a :class:`CrossTaskStem`; the U-Net then segments its ``F_seg`` features, and
            ``forward(x, context)`` mixes in the classification view ``context``.
        reverse_attention: skip features times ``1 - sigmoid(UP(coarser lesion logit))``.
        refinement_passes: n > 0 runs the U-Net n + 1 times; pass k > 0 gets the previous
            pass's fused lesion probability as one extra input channel (zeros for pass 0),
            so the first conv takes one channel more. ``eta`` and ``fusion``
            (:func:`fused_logits`) fuse the scales.
        pyramid_conv, channel_attention, residual_refinement: MSD-Net's blocks
            (``autojoint.networks.msd_blocks``): a pyramid convolution block after encoder
            stage k; skips fused into the upsampled decoder features by channel attention
            (the decoder convs then take C channels, not 2C); a residual refinement block on
            every decoder stage's output.

    Shape:
        input ``(B, C, Z, Y, X)`` with spatial sizes divisible by the total stride;
        output list of ``(B, K, Z_i, Y_i, X_i)``, finest scale first (the last pass's).
    """

    def __init__(
        self,
        topology: Topology,
        in_channels: int,
        num_classes: int,
        layers: LayerTypes = LAYERS_3D,
        *,
        reverse_attention: bool = False,
        refinement_passes: int = 0,
        eta: Sequence[float] = (),
        stem: CrossTaskStem | None = None,
        pyramid_conv: bool = False,
        channel_attention: bool = False,
        residual_refinement: bool = False,
        fusion: str = "softmax",
    ) -> None:
        super().__init__()
        if refinement_passes < 0:
            raise ValueError(f"refinement_passes must be >= 0, got {refinement_passes}.")
        if refinement_passes > 0 and len(eta) != topology.num_stages:
            raise ValueError(
                f"refinement needs one eta per stage ({topology.num_stages}), got {len(eta)}."
            )
        self.reverse_attention = reverse_attention
        self.refinement_passes = refinement_passes
        self.eta = tuple(eta)
        self.fusion = fusion
        feats = topology.features_per_stage
        self.encoder = nn.ModuleList()
        prev = (stem.out_channels if stem is not None else in_channels) + int(refinement_passes > 0)
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
                    (1 if channel_attention else 2) * feats[s - 1],
                    feats[s - 1],
                    topology.kernel_sizes[s - 1],
                    tuple(1 for _ in stride),
                )
            )
        # Heads ordered coarse (bottleneck) to fine, reversed in forward.
        self.heads = nn.ModuleList(
            [layers.conv(feats[s], num_classes, 1) for s in range(topology.num_stages - 1, -1, -1)]
        )
        # Optional blocks only exist when switched on, so a net with every switch off keeps
        # the foundation's parameters and names.
        decoder_stages = range(topology.num_stages - 2, -1, -1)  # coarse to fine, as decoder
        self.pyramids = (
            nn.ModuleList(
                [
                    PyramidConvBlock(layers, f, level, k)
                    for level, (f, k) in enumerate(
                        zip(feats, topology.kernel_sizes, strict=True), start=1
                    )
                ]
            )
            if pyramid_conv
            else None
        )
        self.attention = (
            nn.ModuleList(
                [ChannelAttentionFusion(layers, feats[s], feats[s]) for s in decoder_stages]
            )
            if channel_attention
            else None
        )
        self.refiners = (
            nn.ModuleList(
                [
                    ResidualRefinementBlock(layers, feats[s], feats[s], topology.kernel_sizes[s])
                    for s in decoder_stages
                ]
            )
            if residual_refinement
            else None
        )
        # Registered last so a net without a stem keeps the foundation's parameter order.
        self.stem = stem

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        box: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """Segment ``x``. ``context`` (the case's classification view) is mixed in by the
        cross-stitch stem at ``box``, where ``x`` lies in it (required with a context;
        ``autojoint.networks.cross_stitch.crop_box``); without a stem both are ignored,
        without a context the stem uses ``x``'s own features alone."""
        if self.stem is not None:
            features, _ = self.stem(x, context, box)
            assert features is not None
            x = features
        return self.segment_features(x)

    def segment_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Segment U-Net input features (the stem's output when there is a stem);
        the last refinement pass's scales."""
        if self.refinement_passes == 0:
            return self.unet(x)
        return self.refinement(x)[-1]

    def refinement(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        """Every pass's scales (MultiR-Net's iterative refinement). The previous lesion map is
        not detached: the loss on the last pass trains the earlier ones through it."""
        lesion = x.new_zeros((x.shape[0], 1, *x.shape[2:]))
        passes = []
        for _ in range(self.refinement_passes + 1):
            scales = self.unet(torch.cat([x, lesion], dim=1))
            passes.append(scales)
            lesion = lesion_probability(scales, self.eta, self.fusion)
        return passes

    def unet(self, x: torch.Tensor) -> list[torch.Tensor]:
        """One encoder-decoder pass over ``x`` (already holding any refinement channel)."""
        skips = []
        for s, stage in enumerate(self.encoder):
            x = stage(x)
            if self.pyramids is not None:
                x = self.pyramids[s](x)
            skips.append(x)
        outputs = [self.heads[0](x)]
        for i, (up, dec) in enumerate(zip(self.upsample, self.decoder, strict=True)):
            skip = skips[-(i + 2)]
            if self.reverse_attention:
                skip = apply_reverse_attention(skip, outputs[-1])
            if self.attention is not None:
                x = dec(self.attention[i](skip, up(x)))
            else:
                x = dec(torch.cat([up(x), skip], dim=1))
            if self.refiners is not None:
                x = self.refiners[i](x)
            outputs.append(self.heads[i + 1](x))
        return outputs[::-1]


def lesion_probability(
    scale_logits: Sequence[torch.Tensor], eta: Sequence[float], fusion: str = "softmax"
) -> torch.Tensor:
    """P(any lesion) per voxel of the fused map: 1 - P(background), ``(B, 1, ...)``."""
    return 1.0 - fused_probabilities(scale_logits, eta, fusion)[:, :1]


class ClassificationNet(nn.Module):
    """Residual encoder over the whole-scan view; multi-level GAP -> one FC layer
    (docs/methods.md, "The classifier and the diagnosis loss").

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
        kernels: Sequence[Sequence[int]] | None = None,
    ) -> None:
        super().__init__()
        self.units = nn.ModuleList()
        prev = in_channels
        kernels = kernels if kernels is not None else [None] * len(widths)  # type: ignore[list-item]
        for w, s, k in zip(widths, strides, kernels, strict=True):
            self.units.append(ResidualUnit(layers, prev, w, s, k))
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
        """Class activation maps V_m = sum_k F_m,k * w_m^{k,j} for the class j of each sample
        (docs/methods.md, "Evidence maps: CAM and Grad-CAM").

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


def check_network_options(options: NetworkOptions) -> None:
    """Refuse switch values the network cannot build."""
    if options.classifier_input not in CLASSIFIER_INPUTS:
        raise ValueError(
            f"network.classifier_input must be one of {CLASSIFIER_INPUTS}, "
            f"got {options.classifier_input!r}."
        )
    if options.refinement_passes < 0:
        raise ValueError(
            f"network.refinement_passes must be >= 0, got {options.refinement_passes}."
        )
    if options.fusion not in FUSIONS:
        raise ValueError(f"network.fusion must be one of {FUSIONS}, got {options.fusion!r}.")


class JointNet(nn.Module):
    """Segmentation U-Net shared by both views, plus the classification subnet.

    With ``plan.network.cross_stitch`` the U-Net's input is the cross-stitch stem's output:
    ``F_seg`` for the patch, ``F_cls`` for the whole-scan view, and the classifier reads
    ``F_cls`` in place of the view's image.
    """

    def __init__(self, plan: Plan, layers: LayerTypes = LAYERS_3D) -> None:
        super().__init__()
        options = plan.network
        check_network_options(options)
        self.options = options
        in_ch = len(plan.channel_names)
        self.eta = tuple(plan.eta)
        # The whole-scan view's voxels are coarser than the patch's: its own scale weights
        # (planned as eta at the view's voxel size; the patch's eta for older plans).
        self.view_eta = tuple(plan.classification_eta)
        topology = plan.topology
        stem = None
        if options.cross_stitch:
            # Four branches together as wide as the first stage (at least one channel each).
            branch = max(1, math.ceil(topology.features_per_stage[0] / 4))
            stem = CrossTaskStem(in_ch, branch, topology.kernel_sizes[0], layers)
        self.seg = SegmentationUNet(
            topology,
            in_ch,
            plan.num_labels,
            layers,
            reverse_attention=options.reverse_attention,
            refinement_passes=options.refinement_passes,
            eta=self.eta,
            stem=stem,
            pyramid_conv=options.pyramid_conv,
            channel_attention=options.channel_attention,
            residual_refinement=options.residual_refinement,
            fusion=options.fusion,
        )
        self.cls: ClassificationNet | None = None
        if plan.classification_shape is not None:  # exactly when there are diagnoses
            feats = topology.features_per_stage
            widths = [feats[min(i, len(feats) - 1)] * 2 for i in range(3)]
            # Halve and convolve every axis of the view, except a one-voxel one (the view of a
            # dataset of 2D images, held as one slice): there a 3-kernel would only ever
            # meet zero padding, i.e. wasted arithmetic and weights that never learn.
            flat = [int(n) == 1 for n in plan.classification_shape]
            if len(flat) != len(topology.strides[0]):
                flat = [False] * len(topology.strides[0])
            strides = [tuple(1 if f else 2 for f in flat)] * 3
            kernels = [tuple(1 if f else 3 for f in flat)] * 3
            # Input: the view's image (or F_cls), plus the lesion probability as a channel
            # ("concat", DeepSC), each label's probability as its own channel ("labels": the
            # lesion's type, e.g. ground-glass or consolidation, reaches the diagnosis) or the
            # union multiplied into it ("multiply", MultiR-Net); "image": the image alone (a
            # single-task classifier that no segmentation output reaches).
            image_ch = stem.out_channels if stem is not None else in_ch
            cls_in = image_ch + lesion_map_channels(options.classifier_input, plan.num_labels)
            self.cls = ClassificationNet(
                cls_in, widths, len(plan.classes), strides, layers, kernels
            )

    @property
    def stem(self) -> CrossTaskStem | None:
        """The cross-stitch stem (owned by ``seg``), or None when the switch is off."""
        return self.seg.stem

    def fused_logits(self, scales: Sequence[torch.Tensor]) -> torch.Tensor:
        """The fused segmentation of ``scales`` as logits (the plan's ``network.fusion``)."""
        return fused_logits(scales, self.eta, self.options.fusion)

    def fused_probabilities(self, scales: Sequence[torch.Tensor]) -> torch.Tensor:
        """Per-class probabilities of the fused segmentation of ``scales``."""
        return fused_probabilities(scales, self.eta, self.options.fusion)

    def lesion_probability(self, view_scales: Sequence[torch.Tensor]) -> torch.Tensor:
        """P(any lesion) per voxel of the view's fused map (``view_eta``): 1 - P(background)."""
        return lesion_probability(view_scales, self.view_eta, self.options.fusion)

    def classify(
        self, view: torch.Tensor, *, detach_lesion_input: bool | None = None
    ) -> tuple[list[torch.Tensor], torch.Tensor, list[torch.Tensor]]:
        """Segment the whole-scan view and diagnose from image + lesion map.

        ``detach_lesion_input`` overrides the plan's switch (same numbers either way; only
        the gradient differs): Grad-CAM of the encoder needs the gradient training drops.
        """
        if self.cls is None:
            raise RuntimeError("this plan has no diagnosis classes; the network has no classifier.")
        if self.stem is not None:
            _, f_cls = self.stem(None, view)
            assert f_cls is not None
            view = f_cls
        return self._diagnose(view, detach_lesion_input)

    def _diagnose(
        self, view: torch.Tensor, detach_lesion_input: bool | None = None
    ) -> tuple[list[torch.Tensor], torch.Tensor, list[torch.Tensor]]:
        """Segment U-Net input features of the view and classify them with the lesion map
        (without it for ``classifier_input="image"``; the view is still segmented, for the
        view's segmentation and task-aware losses)."""
        assert self.cls is not None
        view_scales = self.seg.segment_features(view)
        lesion_scales = view_scales
        if detach_lesion_input is None:
            detach_lesion_input = self.options.detach_lesion_input
        if detach_lesion_input:  # the diagnosis loss stops at the lesion map
            lesion_scales = [s.detach() for s in view_scales]
        if self.options.classifier_input == "image":
            cls_input = view
        elif self.options.classifier_input == "multiply":
            cls_input = view * self.lesion_probability(lesion_scales)
        elif self.options.classifier_input == "labels":
            probs = fused_probabilities(lesion_scales, self.view_eta, self.options.fusion)
            cls_input = torch.cat([view, probs[:, 1:]], dim=1)
        else:
            cls_input = torch.cat([view, self.lesion_probability(lesion_scales)], dim=1)
        logits, feats = self.cls(cls_input)
        return view_scales, logits, feats

    def forward(
        self,
        patch: torch.Tensor,
        view: torch.Tensor | None = None,
        box: torch.Tensor | None = None,
    ) -> JointOutput:
        """Segment ``patch`` and, given its case's ``view``, segment and diagnose the view.

        ``box`` ``(B, 2, D)``: where each patch lies in its view (the loader's
        ``patch_box``), required with a view when the cross-stitch stem is on, ignored
        otherwise.
        """
        if view is None or self.cls is None:
            return JointOutput(self.seg(patch), None, None, None)
        if self.stem is not None:
            f_seg, f_cls = self.stem(patch, view, box)
            assert f_seg is not None and f_cls is not None
            patch_scales = self.seg.segment_features(f_seg)
            view_scales, logits, feats = self._diagnose(f_cls)
        else:
            patch_scales = self.seg(patch)
            view_scales, logits, feats = self._diagnose(view)
        return JointOutput(patch_scales, view_scales, logits, feats)
