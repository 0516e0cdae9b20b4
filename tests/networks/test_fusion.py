"""Scale fusion (``plan.network.fusion``): DeepSC-COVID's softmax of the eta-weighted sum
(the default) and MultiR-Net's sum of sigmoids (docs/methods.md), and that every consumer of
the fused map (loss, classifier input, refinement, sliding window) uses the plan's."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from autojoint.inference.sliding_window import network_probabilities
from autojoint.losses.segmentation import (
    deep_supervision_loss,
    dice_ce_per_sample,
    downsample_target,
)
from autojoint.networks.fusion import (
    fuse_scales,
    fused_logits,
    fused_probabilities,
    one_vs_rest_log_odds,
)
from autojoint.networks.joint_net import JointNet, lesion_probability
from autojoint.planning.overrides import apply_overrides
from autojoint.planning.schema import NetworkOptions
from tests.fingerprints import tiny_plan
from tests.helpers import seeded_net


def _constant_scales(per_scale: list[list[float]]) -> list[torch.Tensor]:
    """Scale i holds the logits ``per_scale[i]`` at every voxel; scale i has side 4 / 2^i,
    so upsampling (of a constant) is exact and the fused map is constant too."""
    out = []
    for i, logits in enumerate(per_scale):
        side = 4 // 2**i
        out.append(torch.tensor(logits).view(1, -1, 1, 1, 1).expand(1, -1, side, side, side))
    return out


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_sigmoid_sum_two_scales_two_classes_known_answer() -> None:
    # Lesion logits z1 - z0: +1 at the fine scale, -2 at the coarse one; eta (0.75, 0.25),
    # N = 2: F_1 = sigmoid(2 * 0.75 * 1) + sigmoid(2 * 0.25 * -2) = sigmoid(1.5) + sigmoid(-1)
    #            = 0.8175744762 + 0.2689414214 = 1.0865158976,  p_1 = F_1 / N = 0.5432579488.
    scales = _constant_scales([[0.0, 1.0], [0.0, -2.0]])
    p = fused_probabilities(scales, (0.75, 0.25), "sigmoid_sum")
    assert p.shape == (1, 2, 4, 4, 4)
    expected = (_sigmoid(1.5) + _sigmoid(-1.0)) / 2
    assert expected == pytest.approx(0.5432579488, abs=1e-9)
    torch.testing.assert_close(p[:, 1], torch.full((1, 4, 4, 4), expected), atol=1e-6, rtol=0)
    torch.testing.assert_close(p[:, 0], 1 - p[:, 1], atol=1e-6, rtol=0)
    lesion = lesion_probability(scales, (0.75, 0.25), "sigmoid_sum")
    torch.testing.assert_close(lesion, p[:, 1:], atol=1e-6, rtol=0)
    # The shift of the softmax logits is free; the sum of sigmoids read on the log-odds does
    # not see it.
    shifted = _constant_scales([[5.0, 6.0], [-3.0, -5.0]])
    torch.testing.assert_close(fused_probabilities(shifted, (0.75, 0.25), "sigmoid_sum"), p)
    # The softmax fusion of the same scales: softmax(0.75 * (0, 1) + 0.25 * (0, -2)).
    soft = fused_probabilities(scales, (0.75, 0.25), "softmax")
    torch.testing.assert_close(soft[:, 1], torch.full((1, 4, 4, 4), _sigmoid(0.25)))


def test_sigmoid_sum_three_classes_known_answer() -> None:
    # Scale softmax probabilities q_i; sigmoid(a * logit(q)) = q^a / (q^a + (1 - q)^a).
    q = [(0.2, 0.3, 0.5), (0.6, 0.2, 0.2)]
    scales = _constant_scales([[math.log(v) for v in qi] for qi in q])

    def fused(eta: tuple[float, float]) -> list[float]:
        f = [
            sum(
                qi[k] ** (2 * w) / (qi[k] ** (2 * w) + (1 - qi[k]) ** (2 * w))
                for w, qi in zip(eta, q, strict=True)
            )
            for k in range(3)
        ]
        return [v / sum(f) for v in f]

    # Equal eta: the mean of the scales' softmax probabilities.
    assert fused((0.5, 0.5)) == pytest.approx([0.4, 0.25, 0.35])
    assert fused((0.75, 0.25)) == pytest.approx([0.323154, 0.269822, 0.407024], abs=1e-6)
    for eta in ((0.5, 0.5), (0.75, 0.25)):
        p = fused_probabilities(scales, eta, "sigmoid_sum")[0, :, 0, 0, 0]
        torch.testing.assert_close(p, torch.tensor(fused(eta)), atol=1e-6, rtol=0)


def test_one_vs_rest_log_odds_give_the_softmax_back() -> None:
    z = torch.randn(2, 4, 3, 5, generator=torch.Generator().manual_seed(0)) * 3
    torch.testing.assert_close(torch.sigmoid(one_vs_rest_log_odds(z)), torch.softmax(z, 1))
    two = z[:, :2]
    torch.testing.assert_close(one_vs_rest_log_odds(two)[:, 1], two[:, 1] - two[:, 0])


def test_softmax_fusion_is_unchanged_and_sigmoid_sum_is_finite_at_extremes() -> None:
    g = torch.Generator().manual_seed(1)
    scales = [torch.randn(2, 3, 8 // 2**i, 8 // 2**i, 8 // 2**i, generator=g) for i in range(3)]
    eta = (0.5, 0.3, 0.2)
    assert torch.equal(fused_logits(scales, eta), fuse_scales(scales, eta))
    assert torch.equal(fused_probabilities(scales, eta), torch.softmax(fuse_scales(scales, eta), 1))
    extreme = [(s * 300).requires_grad_() for s in scales]
    log_p = fused_logits(extreme, eta, "sigmoid_sum")
    assert bool(torch.isfinite(log_p).all())
    torch.testing.assert_close(log_p.exp().sum(1), torch.ones(2, 8, 8, 8))
    log_p.sum().backward()
    assert all(bool(torch.isfinite(s.grad).all()) for s in extreme)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown fusion"):
        fused_logits(scales, eta, "mean")


def test_the_fusion_is_a_plan_switch() -> None:
    plan = apply_overrides(tiny_plan(), ["network.fusion=sigmoid_sum"])
    assert plan.network.fusion == "sigmoid_sum"
    assert tiny_plan().network.fusion == "softmax"
    with pytest.raises(ValueError, match="network.fusion must be one of"):
        apply_overrides(tiny_plan(), ["network.fusion=mean"])


@pytest.fixture(scope="module")
def net() -> JointNet:
    base = tiny_plan(shape=(8, 16, 16))
    options = NetworkOptions(fusion="sigmoid_sum", refinement_passes=1)
    return seeded_net(dataclasses.replace(base, network=options)).eval()


def test_every_consumer_uses_the_plans_fusion(net: JointNet) -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 1, 8, 16, 16, generator=g)
    with torch.no_grad():
        scales = net.seg(x)
        probs = fused_probabilities(scales, net.eta, "sigmoid_sum")
        assert not torch.allclose(probs, fused_probabilities(scales, net.eta, "softmax"))
        # The classifier's lesion map and the refinement passes' input channel.
        torch.testing.assert_close(net.lesion_probability(scales), 1 - probs[:, :1])
        assert net.seg.fusion == "sigmoid_sum"
        # The sliding window (one tile covering the case: the Gaussian weights cancel).
        tiled = network_probabilities(net, x[0].numpy(), (8, 16, 16), net.seg.heads[0].out_channels)
    np.testing.assert_allclose(tiled, probs[0].numpy(), atol=1e-5)
    # The fused term of the segmentation loss scores the fused probabilities.
    target = torch.randint(0, 3, (1, 8, 16, 16), generator=g)
    has_mask = torch.ones(1, dtype=torch.bool)
    loss = deep_supervision_loss(
        scales, target, net.eta, has_mask, dice_ce_per_sample, fusion="sigmoid_sum"
    )
    per_scale = sum(
        w * dice_ce_per_sample(s, downsample_target(target, s.shape[2:])).mean()
        for w, s in zip(net.eta, scales, strict=True)
    )
    fused = dice_ce_per_sample(torch.log(probs), target).mean()
    torch.testing.assert_close(loss, 0.5 * fused + 0.5 * per_scale, atol=1e-5, rtol=1e-5)
