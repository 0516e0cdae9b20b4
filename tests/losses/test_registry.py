"""Selectable segmentation losses: the registry, hand-computed values, identities, training."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from autojoint.losses import registry
from autojoint.losses.joint import joint_loss
from autojoint.losses.registry import (
    get_segmentation_loss,
    register_segmentation_loss,
    segmentation_loss_names,
)
from autojoint.losses.segmentation import (
    dice_ce_per_sample,
    focal_per_sample,
    focal_tversky_per_sample,
    soft_dice_per_sample,
    tversky_index,
)
from autojoint.planning.schema import LossOptions, Plan
from tests.helpers import lesion_batch, seeded_net

NAMES = ("dice_ce", "dice_focal", "focal", "focal_tversky")
EPS = 1e-5

# --- plain-Python references ---------------------------------------------------------------------
# A case is a list of voxels, each (class probabilities incl. background, true class).
Case = list[tuple[tuple[float, ...], int]]

# K = 2, four voxels: P(lesion) = 0.8, 0.3 on lesion voxels and 0.6, 0.1 on background.
BINARY: Case = [((0.2, 0.8), 1), ((0.7, 0.3), 1), ((0.4, 0.6), 0), ((0.9, 0.1), 0)]
# K = 3, four voxels, both foreground classes present.
MULTI: Case = [
    ((0.2, 0.7, 0.1), 1),
    ((0.5, 0.2, 0.3), 2),
    ((0.6, 0.3, 0.1), 0),
    ((0.1, 0.4, 0.5), 2),
]


def _logits(cases: list[Case]) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits = log-probabilities (softmax gives the probabilities back), ``(B, K, N, 1, 1)``."""
    probs = torch.tensor([[p for p, _ in case] for case in cases], dtype=torch.float64)
    target = torch.tensor([[g for _, g in case] for case in cases])
    return torch.log(probs).movedim(-1, 1)[..., None, None], target[..., None, None]


def _sums(case: Case, k: int) -> tuple[float, float, float]:
    """(sum p g, sum (1 - p) g, sum p (1 - g)) of class k."""
    tp = sum(p[k] for p, g in case if g == k)
    fn = sum(1 - p[k] for p, g in case if g == k)
    fp = sum(p[k] for p, g in case if g != k)
    return tp, fn, fp


def _hand_dice(case: Case) -> float:
    k_fg = range(1, len(case[0][0]))
    dice = []
    for k in k_fg:
        tp, fn, fp = _sums(case, k)
        sum_p, sum_g = tp + fp, tp + fn
        dice.append((2 * tp + EPS) / (sum_p + sum_g + EPS))
    return 1 - sum(dice) / len(dice)


def _hand_focal(case: Case, alpha: float, gamma: float) -> float:
    total = 0.0
    for p, g in case:
        a = alpha if g > 0 else 1 - alpha
        total += -a * (1 - p[g]) ** gamma * math.log(p[g])
    return total / len(case)


def _hand_focal_tversky(case: Case, alpha: float, beta: float, gamma: float) -> float:
    k_fg = range(1, len(case[0][0]))
    terms = []
    for k in k_fg:
        tp, fn, fp = _sums(case, k)
        ti = (tp + EPS) / (tp + alpha * fn + beta * fp + EPS)
        terms.append((1 - ti) ** (1 / gamma))
    return sum(terms) / len(terms)


def _close(got: torch.Tensor, expected: list[float]) -> None:
    torch.testing.assert_close(got, torch.tensor(expected, dtype=got.dtype), rtol=1e-9, atol=1e-12)


# --- hand-computed values ------------------------------------------------------------------------


def test_hand_references_match_written_out_numbers() -> None:
    # BINARY: sum p g = 0.8 + 0.3, sum (1-p) g = 0.2 + 0.7, sum p (1-g) = 0.6 + 0.1.
    assert _hand_dice(BINARY) == pytest.approx(1 - (2.2 + EPS) / (3.8 + EPS))
    assert _hand_focal_tversky(BINARY, 0.7, 0.3, 4 / 3) == pytest.approx(
        (1 - (1.1 + EPS) / (1.1 + 0.7 * 0.9 + 0.3 * 0.7 + EPS)) ** 0.75
    )
    focal = (
        -0.25 * 0.2**2 * math.log(0.8)
        - 0.25 * 0.7**2 * math.log(0.3)
        - 0.75 * 0.6**2 * math.log(0.4)
        - 0.75 * 0.1**2 * math.log(0.9)
    ) / 4
    assert _hand_focal(BINARY, 0.25, 2.0) == pytest.approx(focal)


@pytest.mark.parametrize("case", [BINARY, MULTI], ids=["binary", "three_classes"])
def test_dice_ce_hand_computed(case: Case) -> None:
    logits, target = _logits([case])
    ce = -sum(math.log(p[g]) for p, g in case) / len(case)
    _close(get_segmentation_loss("dice_ce", LossOptions())(logits, target), [_hand_dice(case) + ce])


@pytest.mark.parametrize("case", [BINARY, MULTI], ids=["binary", "three_classes"])
@pytest.mark.parametrize(("alpha", "gamma"), [(0.25, 2.0), (0.6, 1.5)])
def test_dice_focal_hand_computed(case: Case, alpha: float, gamma: float) -> None:
    logits, target = _logits([case])
    options = LossOptions(segmentation="dice_focal", focal_alpha=alpha, focal_gamma=gamma)
    loss = get_segmentation_loss("dice_focal", options)(logits, target)
    _close(loss, [_hand_dice(case) + _hand_focal(case, alpha, gamma)])


@pytest.mark.parametrize("case", [BINARY, MULTI], ids=["binary", "three_classes"])
@pytest.mark.parametrize(("alpha", "beta", "gamma"), [(0.7, 0.3, 4 / 3), (0.2, 0.8, 0.9)])
def test_focal_tversky_hand_computed(case: Case, alpha: float, beta: float, gamma: float) -> None:
    logits, target = _logits([case])
    options = LossOptions(
        segmentation="focal_tversky", tversky_alpha=alpha, tversky_beta=beta, tversky_gamma=gamma
    )
    loss = get_segmentation_loss("focal_tversky", options)(logits, target)
    _close(loss, [_hand_focal_tversky(case, alpha, beta, gamma)])


def test_losses_are_per_sample() -> None:
    # Two samples of the same K: each gets its own value, in order.
    other: Case = [((0.3, 0.7), 0), ((0.5, 0.5), 1), ((0.05, 0.95), 1), ((0.99, 0.01), 0)]
    logits, target = _logits([BINARY, other])
    o = LossOptions()
    _close(
        get_segmentation_loss("dice_focal", o)(logits, target),
        [_hand_dice(c) + _hand_focal(c, o.focal_alpha, o.focal_gamma) for c in (BINARY, other)],
    )
    _close(
        get_segmentation_loss("focal_tversky", o)(logits, target),
        [
            _hand_focal_tversky(c, o.tversky_alpha, o.tversky_beta, o.tversky_gamma)
            for c in (BINARY, other)
        ],
    )


# --- identities ---------------------------------------------------------------------------------


def _random(seed: int = 0, K: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, K, 4, 6, 6, generator=g), torch.randint(0, K, (2, 4, 6, 6), generator=g)


def test_focal_gamma_zero_half_alpha_is_half_cross_entropy() -> None:
    logits, target = _random()
    ce = F.cross_entropy(logits, target, reduction="none").flatten(1).mean(1)
    torch.testing.assert_close(focal_per_sample(logits, target, 0.5, 0.0), 0.5 * ce)
    dice_focal = get_segmentation_loss("dice_focal", LossOptions(focal_alpha=0.5, focal_gamma=0.0))
    torch.testing.assert_close(
        dice_focal(logits, target), soft_dice_per_sample(logits, target) + 0.5 * ce
    )


def test_tversky_half_half_is_soft_dice() -> None:
    logits, target = _random(1)
    # Same index up to where eps enters (eps vs eps / 2 against sums of tens of voxels).
    probs = torch.softmax(logits, 1)[:, 1:]
    onehot = F.one_hot(target, 3).movedim(-1, 1)[:, 1:].float()
    dims = (2, 3, 4)
    dice = 2 * (probs * onehot).sum(dims) / (probs.sum(dims) + onehot.sum(dims))
    torch.testing.assert_close(tversky_index(logits, target, 0.5, 0.5), dice, atol=1e-6, rtol=0)
    ftl = get_segmentation_loss(
        "focal_tversky", LossOptions(tversky_alpha=0.5, tversky_beta=0.5, tversky_gamma=1.0)
    )
    torch.testing.assert_close(
        ftl(logits, target), soft_dice_per_sample(logits, target), atol=1e-6, rtol=0
    )


def test_dice_ce_through_registry_is_the_existing_loss() -> None:
    assert get_segmentation_loss("dice_ce", LossOptions()) is dice_ce_per_sample


@pytest.mark.parametrize("name", NAMES)
def test_perfect_prediction_near_zero_with_finite_gradient(name: str) -> None:
    _, target = _random(2)
    logits = (30.0 * F.one_hot(target, 3).movedim(-1, 1).float()).requires_grad_(True)
    loss = get_segmentation_loss(name, LossOptions())(logits, target)
    assert float(loss.detach().max()) < 1e-4
    loss.sum().backward()
    assert logits.grad is not None and bool(torch.isfinite(logits.grad).all())


def test_focal_tversky_weights_false_negatives_by_alpha() -> None:
    # A miss (lesion predicted as background) costs more with alpha = 0.7 than a false alarm.
    miss: Case = [((0.9, 0.1), 1), ((0.1, 0.9), 1), ((0.9, 0.1), 0), ((0.9, 0.1), 0)]
    alarm: Case = [((0.1, 0.9), 1), ((0.1, 0.9), 1), ((0.1, 0.9), 0), ((0.9, 0.1), 0)]
    logits, target = _logits([miss, alarm])
    loss = focal_tversky_per_sample(logits, target, 0.7, 0.3, 1.0)
    assert float(loss[0].detach()) > float(loss[1].detach())


# --- registry -----------------------------------------------------------------------------------


def test_registered_names() -> None:
    assert segmentation_loss_names() == NAMES


def test_unknown_name_lists_available() -> None:
    with pytest.raises(ValueError, match="unknown segmentation loss 'dice'") as err:
        get_segmentation_loss("dice", LossOptions())
    for name in NAMES:
        assert name in str(err.value)


def test_name_cannot_be_registered_twice() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_segmentation_loss("dice_ce")(lambda options: dice_ce_per_sample)


def test_registering_a_new_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_SEGMENTATION_LOSSES", dict(registry._SEGMENTATION_LOSSES))

    @register_segmentation_loss("half_dice")
    def _half(options: LossOptions) -> registry.SegmentationLoss:
        return lambda logits, target: 0.5 * soft_dice_per_sample(logits, target)

    assert "half_dice" in segmentation_loss_names()
    logits, target = _logits([BINARY])
    _close(
        get_segmentation_loss("half_dice", LossOptions())(logits, target),
        [0.5 * _hand_dice(BINARY)],
    )


@pytest.mark.parametrize(
    ("name", "change"),
    [
        ("dice_focal", {"focal_alpha": 1.5}),
        ("dice_focal", {"focal_gamma": -1.0}),
        ("focal", {"focal_gamma": -1.0}),
        ("focal_tversky", {"tversky_gamma": 0.0}),
        ("focal_tversky", {"tversky_alpha": -0.1}),
        ("focal_tversky", {"tversky_alpha": 0.0, "tversky_beta": 0.0}),
    ],
)
def test_invalid_options_are_refused(name: str, change: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=name):
        get_segmentation_loss(name, dataclasses.replace(LossOptions(), **change))


# --- joint loss with each registered loss -------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_joint_loss_backward_reaches_both_subnets(plan: Plan, name: str) -> None:
    net = seeded_net(plan)
    batch = lesion_batch(plan, noise=1.0)
    options = LossOptions(segmentation=name)
    parts = joint_loss(
        net,
        net(batch["data"], batch["cls_data"]),
        batch,
        plan.loss_weights,
        torch.tensor(plan.class_weights),
        options,
    )
    assert all(math.isfinite(float(v.detach())) for v in (parts.total, parts.seg, parts.cls))
    assert float(parts.seg.detach()) > 0
    parts.total.backward()
    assert net.cls is not None
    for sub in (net.seg, net.cls):
        grads = [p.grad for p in sub.parameters() if p.requires_grad]
        assert all(g is not None and bool(torch.isfinite(g).all()) for g in grads)
        assert any(float(g.abs().sum()) > 0 for g in grads if g is not None)


@pytest.mark.parametrize("name", NAMES)
def test_joint_loss_masking_for_each_loss(plan: Plan, name: str) -> None:
    net = seeded_net(plan)
    batch = lesion_batch(plan, noise=1.0)
    batch["has_mask"] = torch.tensor([True, False])
    batch["diagnosis"] = torch.tensor([-1, 2])
    cw = torch.tensor(plan.class_weights)
    options = LossOptions(segmentation=name)
    with torch.no_grad():
        out = net(batch["data"], batch["cls_data"])
        base = joint_loss(net, out, batch, plan.loss_weights, cw, options)
        # The unlabelled sample's masks and the undiagnosed sample's class do not matter.
        changed = dict(batch)
        changed["seg"] = batch["seg"].clone()
        changed["seg"][1] = 2 - changed["seg"][1]
        changed["cls_seg"] = batch["cls_seg"].clone()
        changed["cls_seg"][1] = 0
        again = joint_loss(net, out, changed, plan.loss_weights, cw, options)
        torch.testing.assert_close(again.seg, base.seg)
        torch.testing.assert_close(again.total, base.total)
        # The diagnosis term is the diagnosed sample's alone (one sample: weights cancel).
        assert out.class_logits is not None
        torch.testing.assert_close(
            base.cls, F.cross_entropy(out.class_logits[1:], torch.tensor([2]))
        )
        # ... while changing a labelled sample's mask does change L_seg.
        changed["seg"][0] = 2 - changed["seg"][0]
        moved = joint_loss(net, out, changed, plan.loss_weights, cw, options)
        assert not torch.allclose(moved.seg, base.seg)
