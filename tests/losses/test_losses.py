"""Segmentation, diagnosis and task-aware losses: known answers, masking, and that they train."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from autojoint.losses.joint import (
    VIEW_SEG_WEIGHT,
    diagnosis_loss,
    joint_loss,
    normalised_evidence,
    task_aware_loss,
)
from autojoint.losses.segmentation import (
    deep_supervision_loss,
    dice_ce_per_sample,
    downsample_target,
    soft_dice_per_sample,
)
from autojoint.networks.fusion import fuse_scales
from autojoint.planning.schema import LossOptions, LossWeights, Plan
from tests.fingerprints import tiny_plan
from tests.helpers import lesion_batch, seeded_net

K = 3
DICE_CE = dice_ce_per_sample


def _target(shape=(2, 4, 6, 6), seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, K, shape, generator=g)


def _perfect_logits(target: torch.Tensor, scale: float = 50.0) -> torch.Tensor:
    return scale * F.one_hot(target, K).movedim(-1, 1).float()


def _scales(B: int = 3, seed: int = 0, *, requires_grad: bool = False) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shapes = [(8, 8, 8), (4, 4, 4), (2, 2, 2)]
    return [torch.randn(B, K, *s, generator=g).requires_grad_(requires_grad) for s in shapes]


ETA = (4 / 7, 2 / 7, 1 / 7)


# --- Dice / CE ----------------------------------------------------------------------------------


def test_soft_dice_perfect_prediction_is_zero() -> None:
    t = _target()
    loss = soft_dice_per_sample(_perfect_logits(t), t)
    assert tuple(loss.shape) == (2,)
    torch.testing.assert_close(loss, torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        dice_ce_per_sample(_perfect_logits(t), t), torch.zeros(2), atol=1e-5, rtol=0
    )


def test_soft_dice_completely_wrong_is_one() -> None:
    t = torch.ones(1, 3, 3, 3, dtype=torch.long)
    t[0, 0] = 2
    wrong = _perfect_logits(torch.zeros_like(t))  # predicts background everywhere
    torch.testing.assert_close(soft_dice_per_sample(wrong, t), torch.ones(1), atol=1e-4, rtol=0)


def test_soft_dice_known_answer() -> None:
    # Two voxels, K = 2: probabilities of class 1 are 0.8 and 0.4, truth is [1, 0].
    p1 = torch.tensor([0.8, 0.4])
    logits = torch.stack([torch.zeros(2), torch.log(p1 / (1 - p1))])[None, :, :, None, None]
    t = torch.tensor([1, 0])[None, :, None, None]
    dice = (2 * 0.8 + 1e-5) / (0.8 + 0.4 + 1 + 1e-5)
    loss = soft_dice_per_sample(logits, t)
    torch.testing.assert_close(loss, torch.tensor([1 - dice]), rtol=1e-5, atol=1e-6)
    ce = -(math.log(0.8) + math.log(0.6)) / 2
    torch.testing.assert_close(
        dice_ce_per_sample(logits, t), torch.tensor([1 - dice + ce]), rtol=1e-5, atol=1e-6
    )


def test_soft_dice_is_per_sample() -> None:
    t = _target((2, 3, 4, 4))
    logits = _perfect_logits(t)
    logits[1] = -logits[1]  # ruin the second sample only
    loss = soft_dice_per_sample(logits, t)
    assert loss[0] < 1e-4 and loss[1] > 0.5


def test_downsample_target_takes_the_voxel_nearest_each_centre() -> None:
    t = torch.arange(16).reshape(1, 1, 4, 4) % K
    assert downsample_target(t, (1, 4, 4)) is t
    small = downsample_target(t, (1, 2, 2))
    assert small.dtype == torch.long
    # coarse voxel i spans fine voxels 2i and 2i + 1; its centre lies between them and
    # nearest-exact takes the later (plain nearest took 2i)
    torch.testing.assert_close(small, t[:, :, 1::2, 1::2])


@pytest.mark.parametrize("factor", [4, 8])
def test_coarse_target_stays_in_place_through_the_fusion(factor: int) -> None:
    """A coarse head that predicts its downsampled target exactly, upsampled as the fusion
    does, lands where the fine target is: the centroid moves by at most half a fine voxel
    on average over the object's 16 positions (with plain ``nearest``: (f - 1) / 2, which
    fails here; at f = 2 both give half a voxel, so that factor tells nothing)."""
    n, shifts = 64, []
    for y0 in range(16):
        t = torch.zeros(1, n, n, dtype=torch.long)
        t[0, y0 + 5 : y0 + 26, 10:40] = 1
        small = downsample_target(t, (n // factor, n // factor))
        logits = 20.0 * F.one_hot(small, 2).movedim(-1, 1).float()
        pred = fuse_scales([torch.zeros(1, 2, n, n), logits], (0.0, 1.0)).argmax(1)[0]
        rows = torch.arange(n, dtype=torch.float32)
        shifts.append(
            float((pred.sum(1) * rows).sum() / pred.sum() - (t[0].sum(1) * rows).sum() / t.sum())
        )
    assert abs(sum(shifts) / len(shifts)) <= 0.5 + 1e-6


# --- deep supervision ---------------------------------------------------------------------------


def test_deep_supervision_known_composition() -> None:
    scales = _scales()
    t = _target((3, 8, 8, 8))
    has = torch.ones(3, dtype=torch.bool)
    fused = dice_ce_per_sample(fuse_scales(scales, ETA), t).mean()
    per = sum(
        w * dice_ce_per_sample(s, downsample_target(t, s.shape[2:])).mean()
        for w, s in zip(ETA, scales, strict=True)
    )
    torch.testing.assert_close(
        deep_supervision_loss(scales, t, ETA, has, DICE_CE), 0.5 * fused + 0.5 * per
    )


def test_deep_supervision_perfect_prediction_is_near_zero() -> None:
    t = _target((2, 8, 8, 8))
    scales = [_perfect_logits(downsample_target(t, s)) for s in [(8, 8, 8), (4, 4, 4), (2, 2, 2)]]
    scales = [scales[0], 0 * scales[1], 0 * scales[2]]  # only the finest votes
    loss = deep_supervision_loss(
        scales, t, (1.0, 0.0, 0.0), torch.ones(2, dtype=torch.bool), DICE_CE
    )
    assert float(loss.detach()) < 1e-4


def test_deep_supervision_ignores_samples_without_mask() -> None:
    scales = _scales()
    t = _target((3, 8, 8, 8))
    has = torch.tensor([True, False, True])
    base = deep_supervision_loss(scales, t, ETA, has, DICE_CE)
    t2 = t.clone()
    t2[1] = (t2[1] + 1) % K  # change only the unmasked-out sample's target
    torch.testing.assert_close(deep_supervision_loss(scales, t2, ETA, has, DICE_CE), base)
    # ... and it equals the loss of the labelled samples alone.
    keep = torch.tensor([0, 2])
    torch.testing.assert_close(
        deep_supervision_loss(
            [s[keep] for s in scales], t[keep], ETA, torch.ones(2, dtype=torch.bool), DICE_CE
        ),
        base,
    )
    assert not torch.allclose(
        deep_supervision_loss(scales, t2, ETA, torch.ones(3, dtype=torch.bool), DICE_CE), base
    )


def test_deep_supervision_no_mask_at_all_is_zero_with_grad() -> None:
    scales = _scales(requires_grad=True)
    loss = deep_supervision_loss(
        scales, _target((3, 8, 8, 8)), ETA, torch.zeros(3, dtype=torch.bool), DICE_CE
    )
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert scales[0].grad is not None and torch.count_nonzero(scales[0].grad) == 0


# --- diagnosis ----------------------------------------------------------------------------------


def test_diagnosis_loss_all_unknown_is_zero() -> None:
    logits = torch.randn(4, 3, requires_grad=True)
    loss = diagnosis_loss(logits, torch.full((4,), -1), torch.ones(3))
    assert float(loss.detach()) == 0.0
    loss.backward()  # still part of the graph
    assert logits.grad is not None and torch.count_nonzero(logits.grad) == 0


def test_diagnosis_loss_weighted_ce_matches_reference() -> None:
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(6, 3, generator=g)
    target = torch.tensor([0, 2, 1, 2, 2, 0])
    w = torch.tensor([0.5, 2.0, 1.25])
    # Reference by hand: the per-sample weighted mean sum_i w_{y_i} * -log p_{i, y_i} / n.
    logp = torch.log_softmax(logits, 1)[torch.arange(6), target]
    manual = -(w[target] * logp).sum() / 6
    torch.testing.assert_close(diagnosis_loss(logits, target, w), manual)


def test_diagnosis_loss_weights_survive_a_one_class_batch() -> None:
    """Issue 16, defect 2: F.cross_entropy(weight=w) divides by the batch's summed weights,
    so a batch whose samples share a class lost its weight (always at batch 1)."""
    logits = torch.tensor([[0.3, -0.2, 0.1], [1.0, 0.0, -1.0]])
    target = torch.tensor([1, 1])
    w = torch.tensor([1.0, 3.0, 0.5])
    ce = F.cross_entropy(logits, target)
    torch.testing.assert_close(diagnosis_loss(logits, target, w), 3.0 * ce)
    torch.testing.assert_close(
        diagnosis_loss(logits[:1], target[:1], w),
        3.0 * ce.new_tensor(F.cross_entropy(logits[:1], target[:1]).item()),
    )


def test_diagnosis_loss_ignores_minus_one() -> None:
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(5, 3, generator=g)
    target = torch.tensor([1, -1, 0, -1, 2])
    w = torch.tensor([1.0, 3.0, 0.5])
    keep = target >= 0
    ce = F.cross_entropy(logits[keep], target[keep], reduction="none")
    expected = (w[target[keep]] * ce).mean()
    torch.testing.assert_close(diagnosis_loss(logits, target, w), expected)
    # The logits of unknown-diagnosis samples do not matter.
    logits2 = logits.clone()
    logits2[~keep] = 100.0 * torch.randn(2, 3, generator=g)
    torch.testing.assert_close(diagnosis_loss(logits2, target, w), expected)


# --- task-aware ---------------------------------------------------------------------------------

TA_SHAPES = [(8, 8, 8), (4, 4, 4), (2, 2, 2), (1, 1, 1)]
TA_ETA = (0.4, 0.3, 0.2, 0.1)


def _lesion_scales(lesion: torch.Tensor) -> list[torch.Tensor]:
    """Two-class view logits per scale: lesion probability ~1 inside ``lesion`` (given at
    the finest scale), ~0 outside; coarser scales by nearest-neighbour subsampling."""
    out = []
    for shape in TA_SHAPES:
        m = F.interpolate(lesion[:, None].float(), size=shape, mode="nearest")[:, 0]
        logits = torch.stack([-30.0 * (2 * m - 1), 30.0 * (2 * m - 1)], dim=1)
        out.append(logits)
    return out


def test_normalised_evidence_zero_is_no_evidence_and_peak_is_one() -> None:
    maps = torch.tensor([[[[-2.0, 0.0, 1.0, 4.0]]], [[[-1.0, -3.0, 0.0, 0.0]]]])  # (2,1,1,4)
    v = normalised_evidence(maps)
    torch.testing.assert_close(v[0, 0, 0], torch.tensor([0.0, 0.0, 0.25, 1.0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(v[1], torch.zeros(1, 1, 4))  # nothing positive: no evidence


def test_task_aware_loss_known_answers() -> None:
    # Uniform logits over K = 2 classes: lesion probability 0.5 everywhere. With the old
    # sigmoid-squashed evidence, a zero CAM also read 0.5: "half lesion everywhere" scored 0
    # (issue 16, defect 1). Now "no evidence" is 0 and that state costs eta_i * 0.25.
    view = [torch.zeros(1, 2, *s) for s in TA_SHAPES]
    evidence_zero = [torch.zeros(1, 1, *s) for s in TA_SHAPES[1:]]
    expected = 0.25 * (0.3 + 0.2 + 0.1)
    assert float(task_aware_loss(view, evidence_zero, TA_ETA)) == pytest.approx(expected)
    # Uniform positive evidence normalises to 1 everywhere: the same distance from 0.5.
    evidence_flat = [torch.full_like(e, 7.0) for e in evidence_zero]
    assert float(task_aware_loss(view, evidence_flat, TA_ETA)) == pytest.approx(expected)
    # Only as many terms as there are coarser view scales.
    assert float(task_aware_loss(view[:2], evidence_flat, TA_ETA)) == pytest.approx(0.25 * 0.3)


def test_task_aware_loss_zero_when_evidence_marks_the_lesion() -> None:
    lesion = torch.zeros(1, 8, 8, 8, dtype=torch.bool)
    lesion[:, :4, :4, :4] = True
    scales = _lesion_scales(lesion)
    # Evidence proportional to the lesion map at each unit's resolution, any positive scale.
    evidence = [3.0 ** (i + 1) * (1 - torch.softmax(s, 1)[:, :1]) for i, s in enumerate(scales[1:])]
    assert float(task_aware_loss(scales, evidence, TA_ETA)) == pytest.approx(0.0, abs=1e-6)
    # Evidence everywhere but the lesion: every voxel is wrong at the 4^3 and 2^3 scales
    # (1/8 lesion voxels there), the 1^3 scale is all lesion and all evidence-free.
    inverse = [-e for e in evidence]  # negative CAM = no evidence, only the lesion misses
    got = float(task_aware_loss(scales, inverse, TA_ETA))
    assert got == pytest.approx(0.3 / 8 + 0.2 / 8 + 0.1 * 1.0, rel=1e-4)


@pytest.mark.parametrize(
    ("gradient", "s_learns", "v_learns"),
    [("evidence", False, True), ("segmentation", True, False), ("both", True, True)],
)
def test_task_aware_gradient_policy(gradient: str, s_learns: bool, v_learns: bool) -> None:
    g = torch.Generator().manual_seed(6)
    scales = [torch.randn(2, 2, *s, generator=g).requires_grad_(True) for s in TA_SHAPES]
    evidence = [torch.randn(2, 1, *s, generator=g).requires_grad_(True) for s in TA_SHAPES[1:]]
    task_aware_loss(scales, evidence, TA_ETA, gradient).backward()
    s_grad = scales[1].grad
    v_grad = evidence[0].grad
    assert (s_grad is not None and bool(s_grad.abs().sum() > 0)) == s_learns
    assert (v_grad is not None and bool(v_grad.abs().sum() > 0)) == v_learns
    with pytest.raises(ValueError, match="task-aware gradient"):
        task_aware_loss(scales, evidence, TA_ETA, "sideways")


# --- joint --------------------------------------------------------------------------------------


def test_joint_loss_terms(plan: Plan) -> None:
    net = seeded_net(plan)
    batch = lesion_batch(plan)
    out = net(batch["data"], batch["cls_data"])
    cw = torch.tensor(plan.class_weights)
    parts = joint_loss(net, out, batch, plan.loss_weights, cw, LossOptions())
    seg = deep_supervision_loss(out.patch_scales, batch["seg"], net.eta, batch["has_mask"], DICE_CE)
    seg = seg + VIEW_SEG_WEIGHT * deep_supervision_loss(
        out.view_scales, batch["cls_seg"], net.view_eta, batch["has_mask"], DICE_CE
    )
    torch.testing.assert_close(parts.seg, seg.detach())
    torch.testing.assert_close(
        parts.cls, diagnosis_loss(out.class_logits, batch["diagnosis"], cw).detach()
    )
    assert float(parts.task_aware) > 0
    w = plan.loss_weights
    torch.testing.assert_close(
        parts.total, w.seg * parts.seg + w.cls * parts.cls + w.task_aware * parts.task_aware
    )
    assert parts.total.requires_grad and not parts.seg.requires_grad
    # Without the task-aware weight the term is not computed.
    no_ta = joint_loss(net, out, batch, LossWeights(1.0, 1.0, 0.0), cw, LossOptions())
    assert float(no_ta.task_aware) == 0.0


def test_task_aware_term_uses_the_reference_diagnosis_and_skips_lesion_free_scans(
    plan: Plan,
) -> None:
    """Issue 16, defect 1: the task-aware loss takes the evidence of the reference diagnosis
    (not the argmax, which is wrong or "normal" early in training), and only for scans whose
    view holds a lesion and that have a diagnosis."""
    net = seeded_net(plan)
    assert net.cls is not None
    batch = lesion_batch(plan)
    out = net(batch["data"], batch["cls_data"])
    w = LossWeights(0.0, 0.0, 1.0)
    cw = torch.tensor(plan.class_weights)
    got = joint_loss(net, out, batch, w, cw, LossOptions()).task_aware
    expected = task_aware_loss(
        out.view_scales,
        net.cls.evidence_maps(out.class_features, batch["diagnosis"]),
        net.view_eta,
    )
    torch.testing.assert_close(got, expected.detach())
    # Another reference diagnosis changes the term (its evidence map differs) ...
    other = {**batch, "diagnosis": (batch["diagnosis"] + 1) % len(plan.classes)}
    assert float(joint_loss(net, out, other, w, cw, LossOptions()).task_aware) != pytest.approx(
        float(got)
    )
    # ... a lesion-free view (a normal scan) or an unknown diagnosis drops the sample.
    first_only = task_aware_loss(
        [s[:1] for s in out.view_scales],
        net.cls.evidence_maps([f[:1] for f in out.class_features], batch["diagnosis"][:1]),
        net.view_eta,
    )
    clean = batch["cls_seg"].clone()
    clean[1] = 0
    for variant in (
        {**batch, "cls_seg": clean},
        {**batch, "diagnosis": torch.tensor([batch["diagnosis"][0].item(), -1])},
    ):
        torch.testing.assert_close(
            joint_loss(net, out, variant, w, cw, LossOptions()).task_aware, first_only.detach()
        )
    nothing = {**batch, "cls_seg": torch.zeros_like(batch["cls_seg"])}
    assert float(joint_loss(net, out, nothing, w, cw, LossOptions()).task_aware) == 0.0


def test_few_optimisation_steps_reduce_joint_loss(plan: Plan) -> None:
    net = seeded_net(plan)
    batch = lesion_batch(plan)
    cw = torch.tensor(plan.class_weights)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(10):
        opt.zero_grad()
        out = net(batch["data"], batch["cls_data"])
        parts = joint_loss(net, out, batch, plan.loss_weights, cw, plan.loss)
        parts.total.backward()
        opt.step()
        losses.append(float(parts.total.detach()))
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.85 * losses[0], losses
    assert max(losses[-3:]) < min(losses[:3]), losses


def test_segmentation_only_plan_trains(plan: Plan) -> None:
    seg_plan = tiny_plan(classes=(), shape=(8, 16, 16))
    net = seeded_net(seg_plan, seed=1)
    batch = lesion_batch(seg_plan)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(6):
        opt.zero_grad()
        out = net(batch["data"])
        parts = joint_loss(net, out, batch, seg_plan.loss_weights, torch.ones(1), seg_plan.loss)
        assert float(parts.cls) == 0.0 and float(parts.task_aware) == 0.0
        parts.total.backward()
        opt.step()
        losses.append(float(parts.total.detach()))
    assert losses[-1] < losses[0]


# --- class-weighted multi-class focal loss (MSD-Net, issue 10) -----------------------------


def test_weighted_focal_matches_a_hand_computation() -> None:
    from autojoint.losses.segmentation import weighted_focal_per_sample

    # One sample, 4 classes (background, ground-glass, interstitial, consolidation), 3 voxels.
    logits = torch.tensor([[[2.0, 0.0, -1.0], [0.5, 1.0, 0.0], [0.0, 0.0, 0.0], [-1.0, 2.0, 1.5]]])
    target = torch.tensor([[0, 3, 1]])
    weights = (0.5, 2.0, 3.0, 4.0)
    gamma = 2.0
    expected = 0.0
    for v, t in enumerate([0, 3, 1]):
        col = [float(logits[0, k, v]) for k in range(4)]
        p_t = math.exp(col[t]) / sum(math.exp(c) for c in col)
        expected += -weights[t] * (1 - p_t) ** gamma * math.log(p_t)
    expected /= 3
    got = weighted_focal_per_sample(logits, target, weights, gamma)
    assert got.shape == (1,)
    assert float(got[0]) == pytest.approx(expected, rel=1e-5)


def test_weighted_focal_with_unit_weights_and_gamma_0_is_cross_entropy() -> None:
    from autojoint.losses.segmentation import weighted_focal_per_sample

    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 3, 4, 5, generator=g)
    target = torch.randint(0, 3, (2, 4, 5), generator=g)
    ce = F.cross_entropy(logits, target, reduction="none").flatten(1).mean(1)
    torch.testing.assert_close(weighted_focal_per_sample(logits, target, (), 0.0), ce)
    torch.testing.assert_close(weighted_focal_per_sample(logits, target, (1.0,) * 3, 0.0), ce)
    with pytest.raises(ValueError, match="2 class weights for 3 classes"):
        weighted_focal_per_sample(logits, target, (1.0, 1.0), 0.0)


def test_focal_is_registered_and_reads_the_plan_options() -> None:
    from autojoint.losses.registry import get_segmentation_loss
    from autojoint.planning.schema import LossOptions

    logits = torch.randn(1, 3, 6)
    target = torch.tensor([[0, 1, 2, 0, 0, 1]])
    loss = get_segmentation_loss(
        "focal", LossOptions(focal_gamma=2.0, voxel_class_weights=(0.5, 2.0, 4.0))
    )
    from autojoint.losses.segmentation import weighted_focal_per_sample

    torch.testing.assert_close(
        loss(logits, target), weighted_focal_per_sample(logits, target, (0.5, 2.0, 4.0), 2.0)
    )
    with pytest.raises(ValueError, match="positive voxel_class_weights"):
        get_segmentation_loss("focal", LossOptions(voxel_class_weights=(1.0, 0.0, 1.0)))
