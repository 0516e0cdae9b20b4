"""MSD-Net's blocks (issue 10): shapes and channel preservation in 2D and 3D, the pyramid
kernel rule, the attention formula, and the blocks switched on inside the joint network."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from autojoint.networks.blocks import LAYERS_2D, LAYERS_3D, LayerTypes, init_weights
from autojoint.networks.joint_net import JointNet
from autojoint.networks.msd_blocks import (
    ChannelAttentionFusion,
    PyramidConvBlock,
    ResidualRefinementBlock,
    SeparableDepthwise,
    pyramid_kernel_sizes,
)
from autojoint.planning.schema import NetworkOptions
from tests.fingerprints import tiny_plan
from tests.helpers import seeded_net

DIMS = {"2d": (LAYERS_2D, (2, 6, 19, 24)), "3d": (LAYERS_3D, (2, 6, 5, 19, 24))}


def test_pyramid_kernel_sizes_follow_4k_minus_1_to_8k_minus_5() -> None:
    assert pyramid_kernel_sizes(1) == (3,)
    assert pyramid_kernel_sizes(2) == (7, 11)
    assert pyramid_kernel_sizes(3) == (11, 15, 19)
    assert pyramid_kernel_sizes(4) == (15, 19, 23, 27)
    for k in range(1, 7):
        sizes = pyramid_kernel_sizes(k)
        assert len(sizes) == k and sizes[0] == 4 * k - 1 and sizes[-1] == 8 * k - 5
    with pytest.raises(ValueError):
        pyramid_kernel_sizes(0)


@pytest.mark.parametrize("dim", list(DIMS))
@pytest.mark.parametrize("level", [1, 2, 3, 6])
def test_pyramid_block_keeps_shape_and_channels(dim: str, level: int) -> None:
    layers, shape = DIMS[dim]
    kernel = (3,) * (len(shape) - 2)
    block = PyramidConvBlock(layers, shape[1], level, kernel)
    assert len(block.branches) == min(level, 4)
    x = torch.randn(shape)
    assert block(x).shape == x.shape


def test_separable_depthwise_is_depthwise_and_skips_inactive_axes() -> None:
    sep = SeparableDepthwise(LAYERS_3D, 4, 7, active=(False, True, True))
    convs = [m for m in sep.depthwise if isinstance(m, nn.Conv3d)]
    assert [tuple(c.kernel_size) for c in convs] == [(1, 7, 1), (1, 1, 7)]
    assert all(c.groups == 4 for c in convs)
    # One voxel impulse spreads along y and x only: z neighbours stay untouched.
    init_weights(sep)
    x = torch.zeros(1, 4, 3, 15, 15)
    x[0, :, 1, 7, 7] = 1.0
    with torch.no_grad():
        y = sep.depthwise(x)
    assert torch.count_nonzero(y[0, :, 0]) == 0 and torch.count_nonzero(y[0, :, 2]) == 0
    assert torch.count_nonzero(y[0, :, 1]) > 0


@pytest.mark.parametrize("dim", list(DIMS))
def test_channel_attention_matches_its_formula(dim: str) -> None:
    layers, shape = DIMS[dim]
    torch.manual_seed(0)
    fusion = ChannelAttentionFusion(layers, shape[1], shape[1])
    skip, dec = torch.randn(shape), torch.randn(shape)
    spatial = tuple(range(2, len(shape)))
    pooled = torch.cat([skip, dec], 1).mean(dim=spatial)  # (B, 2C)
    weight = fusion.mix.weight.flatten(1)  # (C, 2C)
    w = torch.sigmoid(pooled @ weight.T + fusion.mix.bias)  # (B, C)
    expected = dec + w.view(*w.shape, *(1,) * len(spatial)) * skip
    torch.testing.assert_close(fusion(skip, dec), expected)
    with pytest.raises(ValueError, match="channel counts must match"):
        ChannelAttentionFusion(layers, 4, 6)


@pytest.mark.parametrize("dim", list(DIMS))
def test_residual_refinement_changes_channels_and_keeps_space(dim: str) -> None:
    layers, shape = DIMS[dim]
    block = ResidualRefinementBlock(layers, shape[1], 10, (3,) * (len(shape) - 2))
    x = torch.randn(shape)
    out = block(x)
    assert out.shape == (shape[0], 10, *shape[2:])
    y = block.adjust(x)  # the 1x1 conv adjusting channels, summed with the residual body
    torch.testing.assert_close(out, torch.nn.functional.leaky_relu(y + block.body(y), 0.01))


def _layers_for(dim: str) -> LayerTypes:
    return DIMS[dim][0]


@pytest.mark.parametrize(
    "options",
    [
        NetworkOptions(pyramid_conv=True),
        NetworkOptions(channel_attention=True),
        NetworkOptions(residual_refinement=True),
        NetworkOptions(
            pyramid_conv=True,
            channel_attention=True,
            residual_refinement=True,
            reverse_attention=True,
        ),
    ],
    ids=["pyramid", "attention", "refinement", "all_msd_plus_reverse"],
)
def test_msd_switches_in_joint_net_shapes_and_gradients(options: NetworkOptions) -> None:
    plan = dataclasses.replace(tiny_plan(shape=(8, 32, 32)), network=options)
    net = seeded_net(plan)
    patch = torch.randn(2, 1, *plan.patch_size)
    view = torch.randn(2, 1, *plan.classification_shape)
    out = net(patch, view)
    assert out.patch_scales[0].shape == (2, plan.num_labels, *plan.patch_size)
    assert out.class_logits is not None and out.class_logits.shape == (2, 3)
    loss = out.patch_scales[0].square().mean() + out.class_logits.square().mean()
    loss.backward()
    names = ("pyramids", "attention", "refiners")
    for name in names:
        module = getattr(net.seg, name)
        switched = {
            "pyramids": options.pyramid_conv,
            "attention": options.channel_attention,
            "refiners": options.residual_refinement,
        }[name]
        assert (module is not None) == switched
        if module is not None:
            grads = [p.grad for p in module.parameters()]
            assert all(g is not None for g in grads)
            assert any(float(g.abs().sum()) > 0 for g in grads if g is not None)


def test_msd_switches_off_keep_the_foundation_parameters() -> None:
    plan = tiny_plan(shape=(8, 32, 32))
    names = [n for n, _ in JointNet(plan).named_parameters()]
    assert not any(k in n for n in names for k in ("pyramids", "attention", "refiners"))


def test_msd_blocks_in_a_2d_network() -> None:
    plan = dataclasses.replace(
        tiny_plan(shape=(8, 32, 32)),
        network=NetworkOptions(pyramid_conv=True, channel_attention=True, residual_refinement=True),
    )
    # The 3D topology's kernels/strides, dropped to their in-plane part, drive a 2D net.
    topo = plan.topology
    topo2d = dataclasses.replace(
        topo,
        kernel_sizes=tuple(k[1:] for k in topo.kernel_sizes),
        strides=tuple(s[1:] for s in topo.strides),
    )
    from autojoint.networks.joint_net import SegmentationUNet

    net = SegmentationUNet(
        topo2d,
        1,
        3,
        LAYERS_2D,
        pyramid_conv=True,
        channel_attention=True,
        residual_refinement=True,
    )
    out = net(torch.randn(2, 1, 32, 32))
    assert out[0].shape == (2, 3, 32, 32)
