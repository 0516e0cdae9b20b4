"""The ablation switches of ``plan.network`` (issue 4): reverse attention, the cross-stitch
stem, the multiplied classifier input and iterative refinement, alone and combined."""

from __future__ import annotations

import dataclasses
import functools
import math

import pytest
import torch
import torch.nn.functional as F

from autojoint.networks.blocks import LAYERS_2D, LAYERS_3D, init_weights
from autojoint.networks.cross_stitch import CrossStitch, InceptionBlock, crop_box, group_count
from autojoint.networks.fusion import fused_probabilities
from autojoint.networks.joint_net import JointNet, SegmentationUNet, lesion_probability
from autojoint.networks.reverse_attention import (
    apply_reverse_attention,
    lesion_logit,
    reverse_attention_weight,
)
from autojoint.planning.schema import NetworkOptions, Plan, Topology
from tests.fingerprints import tiny_plan
from tests.helpers import scale_shapes, seeded_net
from tests.networks.reference_net import RefJointNet

CUBE = (16, 32, 32)  # patch = view = (16, 32, 32)
ODD = (5, 33, 27)  # patch (5, 32, 24), view (5, 28, 24): odd z, anisotropic, unequal views

SWITCHES = {
    "off": NetworkOptions(),
    "reverse_attention": NetworkOptions(reverse_attention=True),
    "cross_stitch": NetworkOptions(cross_stitch=True),
    "multiply": NetworkOptions(classifier_input="multiply"),
    "labels": NetworkOptions(classifier_input="labels"),
    "image": NetworkOptions(classifier_input="image"),
    "refine_1": NetworkOptions(refinement_passes=1),
    "stitch_multiply": NetworkOptions(cross_stitch=True, classifier_input="multiply"),
    "attention_refine_2": NetworkOptions(reverse_attention=True, refinement_passes=2),
    "all": NetworkOptions(
        reverse_attention=True, cross_stitch=True, classifier_input="multiply", refinement_passes=1
    ),
}


@functools.cache
def _base_plan(shape: tuple[int, int, int]) -> Plan:
    return tiny_plan(shape=shape)


def _plan(options: NetworkOptions, shape: tuple[int, int, int] = CUBE) -> Plan:
    return dataclasses.replace(_base_plan(shape), network=options)


def _inputs(plan: Plan, batch: int = 2, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    channels = len(plan.channel_names)
    patch = torch.randn(batch, channels, *plan.patch_size, generator=g)
    view = torch.randn(batch, channels, *plan.classification_shape, generator=g)
    return patch, view


def _boxes(batch: int, ndim: int = 3) -> torch.Tensor:
    """Where each patch lies in its view: a different box per sample, one overhanging the
    case and one mirrored along the last axis."""
    lo = torch.tensor([0.1, 0.5, -0.2, 0.3])[:batch, None].expand(batch, ndim)
    box = torch.stack([lo, lo + 0.45], dim=1).clone()
    if batch > 1:
        box[1, :, -1] = box[1, :, -1].flip(0)
    return box


# --- shapes -------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [CUBE, ODD], ids=["cube", "odd"])
@pytest.mark.parametrize("name", list(SWITCHES))
def test_output_shapes_per_switch(name: str, shape: tuple[int, int, int]) -> None:
    plan = _plan(SWITCHES[name], shape)
    net = seeded_net(plan).eval()
    patch, view = _inputs(plan)
    B, K = patch.shape[0], plan.num_labels
    with torch.no_grad():
        out = net(patch, view, _boxes(B))
        alone = net.seg(patch)
        _, logits_alone, _ = net.classify(view)
    expected = [(B, K, *s) for s in scale_shapes(plan, plan.patch_size)]
    assert [tuple(s.shape) for s in out.patch_scales] == expected
    assert [tuple(s.shape) for s in alone] == expected
    assert out.view_scales is not None and out.class_logits is not None
    view_expected = [(B, K, *s) for s in scale_shapes(plan, plan.classification_shape)]
    assert [tuple(s.shape) for s in out.view_scales] == view_expected
    assert tuple(out.class_logits.shape) == tuple(logits_alone.shape) == (B, len(plan.classes))
    assert out.class_features is not None and len(out.class_features) == 3
    assert all(torch.isfinite(s).all() for s in out.patch_scales + out.view_scales)


@pytest.mark.parametrize("name", ["cross_stitch", "all"])
def test_segmentation_only_forward_without_view(name: str) -> None:
    plan = _plan(SWITCHES[name], ODD)
    net = seeded_net(plan).eval()
    patch, _ = _inputs(plan)
    with torch.no_grad():
        out = net(patch)
        seg = net.seg(patch)
    assert out.view_scales is None and out.class_logits is None
    for a, b in zip(out.patch_scales, seg, strict=True):
        torch.testing.assert_close(a, b)
    seg_only = dataclasses.replace(tiny_plan(classes=(), shape=ODD), network=SWITCHES[name])
    model = seeded_net(seg_only).eval()
    with torch.no_grad():
        scales = model(patch, patch).patch_scales
    assert tuple(scales[0].shape) == (2, seg_only.num_labels, *seg_only.patch_size)


# --- gradients ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in SWITCHES if n != "off"])
def test_gradients_reach_both_heads(name: str) -> None:
    plan = _plan(SWITCHES[name], ODD)
    net = seeded_net(plan).train()
    patch, view = _inputs(plan)
    out = net(patch, view, _boxes(len(patch)))
    assert out.view_scales is not None and out.class_logits is not None
    loss = sum(s.sum() for s in out.patch_scales + out.view_scales) + out.class_logits.sum()
    loss.backward()

    def nonzero(p: torch.nn.Parameter) -> bool:
        return p.grad is not None and bool(torch.count_nonzero(p.grad))

    assert net.cls is not None
    assert nonzero(net.cls.fc.weight)
    for head in net.seg.heads:
        assert nonzero(head.weight)
    first_conv = net.seg.encoder[0][0].conv
    assert nonzero(first_conv.weight)
    if plan.network.cross_stitch:
        assert net.stem is not None
        assert nonzero(net.stem.stitch.weight)
        assert all(p.grad is not None for p in net.stem.parameters())
        assert nonzero(net.stem.seg_block.branch_5[1][0].weight)
        assert nonzero(net.stem.cls_block.branch_pool[1][0].weight)
    if plan.network.refinement_passes:
        # The lesion-map channel of the first conv is used (it only is after pass 0).
        assert torch.count_nonzero(first_conv.weight.grad[:, -1])


# --- reverse attention --------------------------------------------------------------------


def test_lesion_logit_is_one_minus_background() -> None:
    z = torch.tensor([0.0, 0.0, math.log(2.0)]).view(1, 3, 1, 1, 1)
    # P = (1, 1, 2) / 4: P(background) = 0.25, so sigmoid(lesion logit) = 0.75.
    torch.testing.assert_close(torch.sigmoid(lesion_logit(z)), torch.full((1, 1, 1, 1, 1), 0.75))
    binary = torch.tensor([0.5, 2.0]).view(1, 2, 1, 1)
    torch.testing.assert_close(lesion_logit(binary), torch.full((1, 1, 1, 1), 1.5))
    z = torch.randn(2, 4, 3, 5, 2)
    torch.testing.assert_close(
        torch.sigmoid(lesion_logit(z)), 1 - torch.softmax(z, dim=1)[:, :1], rtol=1e-5, atol=1e-6
    )


def test_reverse_attention_weight_hand_computed() -> None:
    # Two-class coarse logits on a (1, 1, 2) grid: lesion logits a = 1 - 0 and b = -1 - 1.
    coarse = torch.tensor([[0.0, 1.0], [1.0, -1.0]]).view(1, 2, 1, 1, 2)
    a, b = 1.0, -2.0
    # Trilinear 2 -> 4 with half-pixel centres: a, 0.75a + 0.25b, 0.25a + 0.75b, b.
    up = torch.tensor([a, 0.75 * a + 0.25 * b, 0.25 * a + 0.75 * b, b])
    hand = (1 - 1 / (1 + torch.exp(-up))).view(1, 1, 1, 1, 4).expand(1, 1, 3, 2, 4)
    weight = reverse_attention_weight(coarse, (3, 2, 4))
    torch.testing.assert_close(weight, hand)
    skip = torch.arange(2 * 24, dtype=torch.float32).view(1, 2, 3, 2, 4)
    torch.testing.assert_close(apply_reverse_attention(skip, coarse), skip * hand)
    # 2D layers interpolate bilinearly.
    weight_2d = reverse_attention_weight(coarse[:, :, 0], (2, 4))
    torch.testing.assert_close(weight_2d, hand[:, :, 0, :2])


def test_unet_applies_reverse_attention_to_every_skip() -> None:
    plan = _plan(SWITCHES["reverse_attention"], ODD)
    net = seeded_net(plan).eval()
    unet = net.seg
    skips: list[torch.Tensor] = []
    dec_inputs: list[torch.Tensor] = []
    hooks = [s.register_forward_hook(lambda m, i, o: skips.append(o)) for s in unet.encoder]
    hooks += [
        d.register_forward_pre_hook(lambda m, i: dec_inputs.append(i[0])) for d in unet.decoder
    ]
    patch, _ = _inputs(plan)
    with torch.no_grad():
        outputs = unet(patch)[::-1]  # coarse to fine, as the decoder makes them
    for h in hooks:
        h.remove()
    feats = plan.topology.features_per_stage
    assert len(dec_inputs) == len(feats) - 1 and len(skips) == len(feats)
    for i, x in enumerate(dec_inputs):
        skip = skips[-(i + 2)]
        w = 1 - torch.sigmoid(
            F.interpolate(
                torch.logsumexp(outputs[i][:, 1:], 1, keepdim=True) - outputs[i][:, :1],
                size=skip.shape[2:],
                mode="trilinear",
                align_corners=False,
            )
        )
        torch.testing.assert_close(x[:, feats[-(i + 2)] :], skip * w)
    # Attention adds no parameters: the plain net's state dict loads.
    plain = JointNet(_plan(NetworkOptions(), ODD))
    plain.load_state_dict(net.state_dict())


def test_reverse_attention_2d_unet_and_joint_net() -> None:
    topo = Topology(
        features_per_stage=(4, 8, 8),
        kernel_sizes=((3, 3), (3, 3), (3, 3)),  # type: ignore[arg-type]
        strides=((1, 1), (2, 2), (2, 1)),  # type: ignore[arg-type]
    )
    unet = SegmentationUNet(topo, 2, 3, LAYERS_2D, reverse_attention=True)
    out = unet(torch.randn(2, 2, 16, 12))
    assert [tuple(o.shape) for o in out] == [(2, 3, 16, 12), (2, 3, 8, 6), (2, 3, 4, 6)]
    # A whole 2D JointNet, every switch on.
    plan_2d = dataclasses.replace(
        _base_plan(CUBE),
        topology=topo,
        eta=(0.5, 0.3, 0.2),
        view_eta=(),
        network=SWITCHES["all"],
    )
    net = seeded_net(plan_2d, layers=LAYERS_2D)
    out_j = net(torch.randn(2, 1, 16, 12), torch.randn(2, 1, 8, 16), _boxes(2, ndim=2))
    assert tuple(out_j.patch_scales[0].shape) == (2, 3, 16, 12)
    assert out_j.view_scales is not None and tuple(out_j.view_scales[0].shape) == (2, 3, 8, 16)
    assert out_j.class_logits is not None and tuple(out_j.class_logits.shape) == (2, 3)
    out_j.class_logits.sum().backward()


# --- cross-stitch stem --------------------------------------------------------------------


def test_cross_stitch_mixing_formula() -> None:
    stitch = CrossStitch()
    torch.testing.assert_close(stitch.weight.detach(), torch.tensor([[0.9, 0.1], [0.1, 0.9]]))
    w_seg1, w_cls2, w_seg2, w_cls1 = 0.7, -0.2, 0.3, 1.5
    with torch.no_grad():
        stitch.weight.copy_(torch.tensor([[w_seg1, w_cls2], [w_seg2, w_cls1]]))
    i_seg = torch.randn(2, 3, 2, 4, 6)
    i_cls = torch.randn(2, 3, 4, 8, 3)
    box = _boxes(2)
    f_seg, f_cls = stitch(i_seg, i_cls, box)
    assert f_seg is not None and f_cls is not None
    torch.testing.assert_close(f_seg, w_seg1 * i_seg + w_cls2 * crop_box(i_cls, box, (2, 4, 6)))
    # The view keeps its own features: classify(view) sees the same F_cls.
    torch.testing.assert_close(f_cls, w_cls1 * i_cls)
    # Constant features crop to the same constant inside the case.
    inner = torch.tensor([[[0.2, 0.0, 0.5], [0.6, 1.0, 0.9]]])
    f_seg, _ = stitch(torch.ones(1, 1, 2, 2, 2), torch.full((1, 1, 3, 5, 7), 2.0), inner)
    assert f_seg is not None
    torch.testing.assert_close(f_seg, torch.full((1, 1, 2, 2, 2), w_seg1 + 2 * w_cls2))
    # An absent input contributes nothing.
    f_seg, f_cls = stitch(i_seg, None)
    assert f_cls is None and f_seg is not None
    torch.testing.assert_close(f_seg, w_seg1 * i_seg)
    f_seg, f_cls = stitch(None, i_cls)
    assert f_seg is None and f_cls is not None
    torch.testing.assert_close(f_cls, w_cls1 * i_cls)
    with pytest.raises(ValueError, match="batch size"):
        stitch(i_seg, i_cls[:1], box)
    with pytest.raises(ValueError, match="box"):
        stitch(i_seg, i_cls)
    with pytest.raises(ValueError, match="box must have shape"):
        stitch(i_seg, i_cls, box[:, :, :2])


def test_inception_block_branches_and_groups() -> None:
    block = InceptionBlock(LAYERS_2D, 2, 3, (3, 3))
    assert tuple(block(torch.randn(1, 2, 7, 5)).shape) == (1, 12, 7, 5)
    aniso = InceptionBlock(LAYERS_3D, 1, 2, (1, 3, 3))
    assert tuple(aniso(torch.randn(2, 1, 3, 9, 6)).shape) == (2, 8, 3, 9, 6)
    assert aniso.branch_3[0].kernel_size == (1, 3, 3)
    assert [group_count(c) for c in (1, 2, 4, 6, 8, 16, 32, 7)] == [1, 1, 2, 3, 4, 8, 8, 1]


def test_joint_net_wires_the_stem() -> None:
    plan = _plan(SWITCHES["cross_stitch"], ODD)
    net = seeded_net(plan).eval()
    stem = net.stem
    assert stem is not None
    with torch.no_grad():
        stem.stitch.weight.copy_(torch.tensor([[0.8, 0.3], [0.4, 0.6]]))
    patch, view = _inputs(plan)
    box = _boxes(len(patch))
    # The U-Net and the classifier read the stem's channels.
    assert net.seg.encoder[0][0].conv.in_channels == stem.out_channels
    assert stem.out_channels >= plan.topology.features_per_stage[0]
    with torch.no_grad():
        out = net(patch, view, box)
        f_seg, f_cls = stem(patch, view, box)
        assert f_seg is not None and f_cls is not None
        i_seg, i_cls = stem.seg_block(patch), stem.cls_block(view)
        torch.testing.assert_close(f_seg, 0.8 * i_seg + 0.3 * crop_box(i_cls, box, plan.patch_size))
        torch.testing.assert_close(f_cls, 0.6 * i_cls)
        for a, b in zip(out.patch_scales, net.seg.segment_features(f_seg), strict=True):
            torch.testing.assert_close(a, b)
        for a, b in zip(out.patch_scales, net.seg(patch, view, box), strict=True):
            torch.testing.assert_close(a, b)
        assert out.view_scales is not None
        for a, b in zip(out.view_scales, net.seg.segment_features(f_cls), strict=True):
            torch.testing.assert_close(a, b)
        # Training diagnoses the view exactly as inference does: from the view alone.
        view_scales, logits, _ = net.classify(view)
        assert out.class_logits is not None
        torch.testing.assert_close(out.class_logits, logits)
        for a, b in zip(out.view_scales, view_scales, strict=True):
            torch.testing.assert_close(a, b)
        # Without a view the patch uses its own features alone; instance norm after the
        # first conv makes the w_seg1 scale immaterial.
        alone = net.seg(patch)
        for a, b in zip(alone, net.seg.segment_features(i_seg), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3)
        # A view without the patch's place in it is refused, not squeezed in whole.
        with pytest.raises(ValueError, match="box"):
            net(patch, view)
        with pytest.raises(ValueError, match="box"):
            net.seg(patch, view)


def test_cross_stitch_mixes_each_case_with_its_own_view() -> None:
    plan = _plan(SWITCHES["all"], ODD)
    net = seeded_net(plan).eval()
    patch, view = _inputs(plan, batch=3)
    box = _boxes(3)
    with torch.no_grad():
        full = net(patch, view, box)
        single = net(patch[1:2], view[1:2], box[1:2])
    assert full.class_logits is not None and single.class_logits is not None
    # Batched and single convolutions sum in different orders: ~1e-5 noise, not mixing.
    for a, b in zip(full.patch_scales, single.patch_scales, strict=True):
        torch.testing.assert_close(a[1:2], b, rtol=1e-4, atol=5e-5)
    torch.testing.assert_close(full.class_logits[1:2], single.class_logits, rtol=1e-4, atol=5e-5)


# --- classifier input ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("off", 1),
        ("multiply", 0),
        ("image", 0),
        ("cross_stitch", 1),
        ("stitch_multiply", 0),
        ("labels", 2),
    ],
)
def test_classifier_input_channels(name: str, extra: int) -> None:
    plan = _plan(SWITCHES[name], ODD)
    assert plan.num_labels == 3  # background, two lesion labels: "labels" adds 2 channels
    net = seeded_net(plan).eval()
    assert net.cls is not None
    image_ch = net.stem.out_channels if net.stem is not None else len(plan.channel_names)
    assert net.cls.units[0].body[0].conv.in_channels == image_ch + extra
    seen: list[torch.Tensor] = []
    hook = net.cls.register_forward_pre_hook(lambda m, i: seen.append(i[0]))
    _, view = _inputs(plan)
    with torch.no_grad():
        view_scales, _, _ = net.classify(view)
    hook.remove()
    features = view if net.stem is None else net.stem(None, view)[1]
    assert features is not None
    lesion = lesion_probability(view_scales, plan.eta)
    if plan.network.classifier_input == "multiply":
        torch.testing.assert_close(seen[0], features * lesion)
    elif plan.network.classifier_input == "image":
        torch.testing.assert_close(seen[0], features)
    elif plan.network.classifier_input == "labels":
        probs = fused_probabilities(view_scales, plan.classification_eta, plan.network.fusion)
        torch.testing.assert_close(seen[0], torch.cat([features, probs[:, 1:]], 1))
        # the label channels split the union's lesion probability, voxel by voxel
        union = lesion_probability(view_scales, plan.classification_eta)
        torch.testing.assert_close(seen[0][:, -2:].sum(1, keepdim=True), union)
    else:
        torch.testing.assert_close(seen[0], torch.cat([features, lesion], 1))


def test_image_input_classifier_reads_no_segmentation_output() -> None:
    plan = _plan(SWITCHES["image"], ODD)
    net = seeded_net(plan).train()
    _, view = _inputs(plan)
    _, logits, _ = net.classify(view)
    logits.sum().backward()
    assert all(p.grad is None for p in net.seg.parameters())
    with torch.no_grad():
        for head in net.seg.heads:
            head.weight.add_(1.0)  # another lesion map: the diagnosis must not move
        _, moved, _ = net.classify(view)
    torch.testing.assert_close(moved, logits.detach())


def _diagnosis_and_unet_gradients(
    classifier_input: str, detach: bool
) -> tuple[JointNet, list[torch.Tensor], torch.Tensor, list[torch.Tensor | None]]:
    plan = _plan(NetworkOptions(classifier_input=classifier_input, detach_lesion_input=detach), ODD)
    net = seeded_net(plan).train()
    _, view = _inputs(plan)
    scales, logits, _ = net.classify(view)
    logits.sum().backward()
    return net, scales, logits.detach(), [p.grad for p in net.seg.parameters()]


@pytest.mark.parametrize("classifier_input", ["concat", "labels", "multiply"])
def test_detached_lesion_input_keeps_the_diagnosis_and_stops_its_gradient(
    classifier_input: str,
) -> None:
    """Detaching changes no number of the forward pass; only the U-Net's gradient from the
    diagnosis goes (the segmentation losses still train it)."""
    _, _, logits, grads = _diagnosis_and_unet_gradients(classifier_input, detach=False)
    net, scales, detached_logits, detached_grads = _diagnosis_and_unet_gradients(
        classifier_input, detach=True
    )
    torch.testing.assert_close(detached_logits, logits)  # same seed, same numbers
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(g is None for g in detached_grads)
    scales[-1].sum().backward()  # the view's own segmentation still trains the U-Net
    assert any(p.grad is not None for p in net.seg.parameters())


def test_detaching_does_nothing_with_image_input() -> None:
    """With ``classifier_input="image"`` no lesion map reaches the classifier: the switch
    (on by default) changes no output and no gradient."""
    _, _, logits, grads = _diagnosis_and_unet_gradients("image", detach=True)
    _, _, plain_logits, plain_grads = _diagnosis_and_unet_gradients("image", detach=False)
    torch.testing.assert_close(logits, plain_logits)
    assert [g is None for g in grads] == [g is None for g in plain_grads]
    for g, h in zip(grads, plain_grads, strict=True):
        if g is not None and h is not None:
            torch.testing.assert_close(g, h)


def test_classify_can_keep_the_gradient_a_detached_plan_drops() -> None:
    """``classify(detach_lesion_input=False)`` (Grad-CAM of the encoder) gives the
    diagnosis's gradient back to the U-Net of a detached plan, with the same logits."""
    net, _, logits, grads = _diagnosis_and_unet_gradients("concat", detach=True)
    assert all(g is None for g in grads)
    _, view = _inputs(_plan(net.options, ODD))
    _, kept, _ = net.classify(view, detach_lesion_input=False)
    torch.testing.assert_close(kept.detach(), logits)
    kept.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.seg.parameters())


def test_unknown_classifier_input_is_refused() -> None:
    with pytest.raises(ValueError, match="classifier_input"):
        JointNet(_plan(NetworkOptions(classifier_input="add")))
    with pytest.raises(ValueError, match="refinement_passes"):
        JointNet(_plan(NetworkOptions(refinement_passes=-1)))


# --- iterative refinement -----------------------------------------------------------------


def test_refinement_zero_passes_is_the_plain_network() -> None:
    plain, zero = (
        seeded_net(_plan(NetworkOptions())),
        seeded_net(_plan(NetworkOptions(refinement_passes=0))),
    )
    assert plain.state_dict().keys() == zero.state_dict().keys()
    patch, _ = _inputs(_plan(NetworkOptions()))
    with torch.no_grad():
        for a, b in zip(plain.seg(patch), zero.seg(patch), strict=True):
            assert torch.equal(a, b)


def test_refinement_passes_feed_the_previous_lesion_map() -> None:
    plan = _plan(NetworkOptions(refinement_passes=2), ODD)
    net = seeded_net(plan).eval()
    seg = net.seg
    assert seg.encoder[0][0].conv.in_channels == len(plan.channel_names) + 1
    patch, _ = _inputs(plan)
    with torch.no_grad():
        passes = seg.refinement(patch)
        assert len(passes) == 3
        zeros = torch.zeros_like(patch[:, :1])
        expected = seg.unet(torch.cat([patch, zeros], 1))
        for k, scales in enumerate(passes):
            for a, b in zip(scales, expected, strict=True):
                torch.testing.assert_close(a, b)
            lesion = (
                1
                - torch.softmax(
                    sum(
                        e
                        * F.interpolate(
                            s, size=plan.patch_size, mode="trilinear", align_corners=False
                        )
                        for e, s in zip(plan.eta, scales, strict=True)
                    ),
                    1,
                )[:, :1]
            )
            if k < 2:
                expected = seg.unet(torch.cat([patch, lesion], 1))
        for a, b in zip(net.seg(patch), passes[-1], strict=True):
            torch.testing.assert_close(a, b)


def test_refinement_with_unused_map_channel_equals_plain_network() -> None:
    plain = seeded_net(_plan(NetworkOptions(), ODD), seed=3).eval()
    refined = seeded_net(_plan(NetworkOptions(refinement_passes=2), ODD), seed=4).eval()
    state = plain.state_dict()
    key = "seg.encoder.0.0.conv.weight"
    w = state[key]
    # Same weights, plus a zero weight for the lesion-map channel.
    state[key] = torch.cat([w, torch.zeros_like(w[:, :1])], dim=1)
    refined.load_state_dict(state)
    patch, view = _inputs(_plan(NetworkOptions(), ODD))
    with torch.no_grad():
        a, b = plain(patch, view), refined(patch, view)
    for x, y in zip(a.patch_scales, b.patch_scales, strict=True):
        torch.testing.assert_close(x, y)
    assert a.class_logits is not None and b.class_logits is not None
    torch.testing.assert_close(a.class_logits, b.class_logits)


# --- compatibility ------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [CUBE, ODD], ids=["cube", "odd"])
def test_switches_off_reproduce_the_foundation_network(shape: tuple[int, int, int]) -> None:
    plan = _plan(NetworkOptions(), shape)
    torch.manual_seed(7)
    ref = RefJointNet(plan)
    init_weights(ref)
    net = seeded_net(plan, seed=7)
    ref_state, state = ref.state_dict(), net.state_dict()
    assert list(ref_state) == list(state)  # same names in the same order
    for k in state:
        assert torch.equal(ref_state[k], state[k]), k
    patch, view = _inputs(plan)
    with torch.no_grad():
        ref_patch, ref_view, ref_logits = ref(patch, view)
        out = net(patch, view)
    assert out.view_scales is not None and out.class_logits is not None
    for a, b in zip(ref_patch + ref_view, out.patch_scales + out.view_scales, strict=True):
        assert torch.equal(a, b)
    assert torch.equal(ref_logits, out.class_logits)


@pytest.mark.parametrize("name", [n for n in SWITCHES if n != "off"])
def test_state_dict_round_trip_through_the_stored_plan(name: str) -> None:
    plan = _plan(SWITCHES[name], ODD)
    net = seeded_net(plan, seed=5).eval()
    with torch.no_grad():
        if net.stem is not None:
            net.stem.stitch.weight.add_(0.05)  # trained weights differ from the init
    # The checkpoint stores the plan as a dict; prediction rebuilds the net from it.
    stored = Plan.from_dict(dataclasses.asdict(plan))
    assert stored.network == plan.network
    fresh = JointNet(stored).eval()
    fresh.load_state_dict(net.state_dict())
    patch, view = _inputs(plan)
    box = _boxes(len(patch))
    with torch.no_grad():
        a, b = net(patch, view, box), fresh(patch, view, box)
    for x, y in zip(a.patch_scales, b.patch_scales, strict=True):
        assert torch.equal(x, y)
    assert a.class_logits is not None and b.class_logits is not None
    assert torch.equal(a.class_logits, b.class_logits)
