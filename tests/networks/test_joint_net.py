"""The joint network built from a plan: shapes per scale, classifier, evidence maps, fusion."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from autojoint.io.workdir import PLANS_FILE
from autojoint.networks.blocks import LAYERS_2D, ResidualUnit
from autojoint.networks.fusion import fuse_scales
from autojoint.networks.joint_net import ClassificationNet, JointNet, SegmentationUNet
from autojoint.pipeline import plan_and_preprocess
from autojoint.planning.schema import Plan, Topology
from tests.fingerprints import tiny_plan
from tests.helpers import scale_shapes, seeded_net
from tests.synthetic import make_raw_dataset


@pytest.fixture(scope="module")
def plan() -> Plan:
    return tiny_plan()


@pytest.fixture(scope="module")
def net(plan: Plan) -> JointNet:
    return seeded_net(plan).eval()


def test_output_shapes_per_scale_finest_first(net: JointNet, plan: Plan) -> None:
    B, K = 2, plan.num_labels
    patch = torch.randn(B, 1, *plan.patch_size)
    view = torch.randn(B, 1, *plan.classification_shape)
    with torch.no_grad():
        out = net(patch, view)
    expected = scale_shapes(plan, plan.patch_size)
    assert expected[0] == plan.patch_size and expected[-1] == (4, 4, 4)
    assert [tuple(s.shape) for s in out.patch_scales] == [(B, K, *e) for e in expected]
    view_expected = scale_shapes(plan, plan.classification_shape)
    assert out.view_scales is not None
    assert [tuple(s.shape) for s in out.view_scales] == [(B, K, *e) for e in view_expected]
    assert out.class_logits is not None and tuple(out.class_logits.shape) == (B, len(plan.classes))
    assert out.class_features is not None and len(out.class_features) == 3
    for i, f in enumerate(out.class_features):
        factor = 2 ** (i + 1)  # residual units at 1/2, 1/4, 1/8 of the view
        assert tuple(f.shape[2:]) == tuple(s // factor for s in plan.classification_shape)
        assert f.shape[1] == net.cls.widths[i]  # type: ignore[union-attr]


def test_forward_without_view_segments_only(net: JointNet, plan: Plan) -> None:
    with torch.no_grad():
        out = net(torch.randn(1, 1, *plan.patch_size))
    assert out.view_scales is None and out.class_logits is None and out.class_features is None
    assert len(out.patch_scales) == plan.topology.num_stages


def test_segmentation_is_batch_independent(net: JointNet, plan: Plan) -> None:
    # Instance norm: each sample's output depends only on that sample.
    x = torch.randn(3, 1, *plan.patch_size)
    with torch.no_grad():
        full = net.seg(x)
        single = net.seg(x[1:2])
    for a, b in zip(full, single, strict=True):
        torch.testing.assert_close(a[1:2], b, rtol=1e-4, atol=1e-5)


def test_evidence_maps_equal_manual_einsum(net: JointNet, plan: Plan) -> None:
    view = torch.randn(2, 1, *plan.classification_shape)
    cls_net = net.cls
    assert cls_net is not None
    with torch.no_grad():
        _, logits, feats = net.classify(view)
        chosen = torch.tensor([2, 0])
        maps = cls_net.evidence_maps(feats, chosen)
    assert len(maps) == len(feats)
    W = cls_net.fc.weight
    start = 0
    for f, v in zip(feats, maps, strict=True):
        w = f.shape[1]
        assert tuple(v.shape) == (f.shape[0], 1, *f.shape[2:])
        manual = torch.einsum("bczyx,bc->bzyx", f, W[chosen, start : start + w])[:, None]
        torch.testing.assert_close(v, manual, rtol=1e-5, atol=1e-5)
        start += w
    assert start == W.shape[1]
    # The logits are the FC layer on the concatenated global average pools ...
    pooled = torch.cat([f.mean(dim=(2, 3, 4)) for f in feats], dim=1)
    torch.testing.assert_close(logits, pooled @ W.T + cls_net.fc.bias, rtol=1e-5, atol=1e-5)
    # ... so the voxel-mean of the evidence maps, summed over units, rebuilds the class logit.
    rebuilt = sum(v.mean(dim=(1, 2, 3, 4)) for v in maps) + cls_net.fc.bias[chosen]
    torch.testing.assert_close(rebuilt, logits[torch.arange(2), chosen], rtol=1e-4, atol=1e-5)


def test_fuse_scales_known_answers(net: JointNet, plan: Plan) -> None:
    with torch.no_grad():
        scales = net.seg(torch.randn(2, 1, *plan.patch_size))
    one_hot_eta = (1.0,) + (0.0,) * (len(scales) - 1)
    torch.testing.assert_close(fuse_scales(scales, one_hot_eta), scales[0])
    # Constant coarse maps upsample to the same constant.
    consts = [torch.full_like(s, float(i + 1)) for i, s in enumerate(scales)]
    fused = fuse_scales(consts, plan.eta)
    expected = sum((i + 1) * e for i, e in enumerate(plan.eta))
    assert tuple(fused.shape) == tuple(scales[0].shape)
    torch.testing.assert_close(fused, torch.full_like(fused, expected))


def test_lesion_probability_is_one_minus_background(net: JointNet, plan: Plan) -> None:
    with torch.no_grad():
        scales = net.seg(torch.randn(1, 1, *plan.patch_size))
        p = net.lesion_probability(scales)
    fused = fuse_scales(scales, plan.eta)
    torch.testing.assert_close(
        p, torch.softmax(fused, 1)[:, 1:].sum(1, keepdim=True), rtol=1e-5, atol=1e-5
    )
    assert p.min() >= 0 and p.max() <= 1


def test_plan_without_classes_has_no_classifier() -> None:
    seg_only = tiny_plan(classes=())
    model = JointNet(seg_only)
    assert model.cls is None
    x = torch.randn(1, 1, *seg_only.patch_size)
    with torch.no_grad():
        out = model(x, x)
    assert out.class_logits is None and out.view_scales is None
    with pytest.raises(RuntimeError, match="no diagnosis classes"):
        model.classify(x)


def test_unet_heads_and_2d_layers() -> None:
    topo = Topology(
        features_per_stage=(4, 8, 8),
        kernel_sizes=((3, 3), (3, 3), (3, 3)),  # type: ignore[arg-type]
        strides=((1, 1), (2, 2), (2, 1)),
    )  # type: ignore[arg-type]
    unet = SegmentationUNet(topo, 2, 3, LAYERS_2D)
    out = unet(torch.randn(2, 2, 16, 12))
    assert [tuple(o.shape) for o in out] == [(2, 3, 16, 12), (2, 3, 8, 6), (2, 3, 4, 6)]
    cls = ClassificationNet(2, (4, 6), 5, ((2, 2), (2, 2)), LAYERS_2D)
    logits, feats = cls(torch.randn(3, 2, 16, 12))
    assert tuple(logits.shape) == (3, 5)
    assert [tuple(f.shape) for f in feats] == [(3, 4, 8, 6), (3, 6, 4, 3)]
    maps = cls.evidence_maps(feats, torch.tensor([0, 4, 1]))
    assert [tuple(m.shape) for m in maps] == [(3, 1, 8, 6), (3, 1, 4, 3)]


def test_residual_unit_downsamples() -> None:
    unit = ResidualUnit(LAYERS_2D, 3, 5, (2, 2))
    assert tuple(unit(torch.randn(1, 3, 10, 8)).shape) == (1, 5, 5, 4)


def test_init_weights_zero_biases(plan: Plan) -> None:
    model = seeded_net(plan, seed=1)
    convs = [
        m for m in model.modules() if isinstance(m, torch.nn.Conv3d | torch.nn.ConvTranspose3d)
    ]
    assert convs
    assert all(m.bias is None or torch.count_nonzero(m.bias) == 0 for m in convs)


def test_net_from_planned_dataset(tmp_path: Path) -> None:
    raw = make_raw_dataset(tmp_path / "raw", 3, shape=(8, 24, 24))
    plan = plan_and_preprocess(raw, tmp_path / "work", preprocess=False)
    assert Plan.load(tmp_path / "work" / PLANS_FILE) == plan
    assert plan.classes == ("COVID-19", "CAP", "normal") and plan.num_labels == 3
    model = JointNet(plan).eval()
    with torch.no_grad():
        out = model(
            torch.randn(1, 1, *plan.patch_size), torch.randn(1, 1, *plan.classification_shape)
        )
    assert tuple(out.patch_scales[0].shape) == (1, 3, *plan.patch_size)
    assert out.class_logits is not None and tuple(out.class_logits.shape) == (1, 3)


def test_view_lesion_map_uses_the_view_eta(plan: Plan) -> None:
    """Issue 16, defect 5: the view's fused lesion map (the classifier's input) uses the
    plan's view eta, not the patch's."""
    n = plan.topology.num_stages
    view_eta = tuple([1.0] + [0.0] * (n - 1))
    assert view_eta != plan.eta
    net = seeded_net(dataclasses.replace(plan, view_eta=view_eta))
    view = torch.randn(1, 1, *plan.classification_shape)
    scales = net.seg.segment_features(view)
    expected = 1.0 - torch.softmax(scales[0], dim=1)[:, :1]  # finest head alone
    torch.testing.assert_close(net.lesion_probability(scales), expected)
    assert net.view_eta == view_eta and net.eta == plan.eta
