"""Presets of the published systems and the focal loss's voxel class weights (issue 10)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from autojoint.networks.joint_net import JointNet
from autojoint.planning.overrides import apply_overrides
from autojoint.planning.planner import MIN_VOXEL_FREQUENCY, voxel_class_weights
from autojoint.planning.presets import MULTIR_LAMBDA, PRESETS, preset_overrides
from autojoint.planning.schema import LossWeights, NetworkOptions, Plan
from tests.fingerprints import make_fingerprint, tiny_plan

LABELS = {"background": 0, "ground_glass": 1, "interstitial": 2, "consolidation": 3}


def test_voxel_class_weights_are_inverse_sqrt_frequency_with_unit_expected_weight() -> None:
    fp = make_fingerprint([(1.0, 1.0, 1.0)] * 3, [(32, 32, 32)] * 3, labels=LABELS)
    fractions = [fp.lesion_stats[n].mean_voxel_fraction for n in list(LABELS)[1:]]
    freqs = [1.0 - fp.lesion_stats["lesion"].mean_voxel_fraction, *fractions]
    weights = voxel_class_weights(fp)
    assert len(weights) == 4
    # Known answer: w_c = c0 / sqrt(f_c) with sum f_c w_c = 1.
    c0 = 1.0 / sum(f**0.5 for f in freqs)
    for w, f in zip(weights, freqs, strict=True):
        assert w == pytest.approx(c0 / f**0.5, rel=1e-9)
    assert sum(f * w for f, w in zip(freqs, weights, strict=True)) == pytest.approx(1.0)
    assert weights[0] < min(weights[1:])  # background is the most frequent class


def test_a_label_that_never_occurs_gets_the_floor_frequency() -> None:
    fp = make_fingerprint([(1.0, 1.0, 1.0)] * 2, [(32, 32, 32)] * 2, labels=LABELS)
    stats = dict(fp.lesion_stats)
    stats["interstitial"] = dataclasses.replace(stats["interstitial"], mean_voxel_fraction=0.0)
    weights = voxel_class_weights(dataclasses.replace(fp, lesion_stats=stats))
    ratio = weights[2] / weights[1]
    expected = (fp.lesion_stats["ground_glass"].mean_voxel_fraction / MIN_VOXEL_FREQUENCY) ** 0.5
    assert ratio == pytest.approx(expected, rel=1e-9)


def test_planned_loss_carries_the_weights_and_round_trips(tmp_path) -> None:
    plan = tiny_plan()
    assert len(plan.loss.voxel_class_weights) == plan.num_labels
    path = tmp_path / "plans.json"
    plan.save(path)
    again = Plan.load(path)
    assert again.loss == plan.loss
    assert isinstance(again.loss.voxel_class_weights, tuple)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_applies_and_builds_a_network(name: str) -> None:
    plan = apply_overrides(tiny_plan(shape=(8, 32, 32)), preset_overrides(name))
    net = JointNet(plan)
    whole_view = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]).expand(2, 2, 3)
    out = net(
        torch.randn(2, 1, *plan.patch_size),
        torch.randn(2, 1, *plan.classification_shape),
        whole_view,
    )
    assert out.class_logits is not None


def test_msd_preset_switches_blocks_and_focal_loss_on() -> None:
    plan = apply_overrides(tiny_plan(), preset_overrides("msd-net"))
    net = plan.network
    assert net.pyramid_conv and net.channel_attention and net.residual_refinement
    assert plan.loss.segmentation == "focal" and plan.loss.focal_gamma == 2.0
    # Data-fitted numbers are untouched by a preset.
    base = tiny_plan()
    assert (plan.patch_size, plan.topology, plan.eta) == (base.patch_size, base.topology, base.eta)


def test_set_after_a_preset_wins_and_unknown_presets_are_refused() -> None:
    plan = apply_overrides(
        tiny_plan(), (*preset_overrides("multir-net"), "network.refinement_passes=0")
    )
    assert plan.network.refinement_passes == 0 and plan.network.reverse_attention
    with pytest.raises(ValueError, match="available: deepsc-covid, default, msd-net"):
        preset_overrides("unet++")


# --- each preset is its paper's setup (issue 16) --------------------------------------------


def _with_preset(name: str) -> Plan:
    return apply_overrides(tiny_plan(), preset_overrides(name))


def test_deepsc_covid_preset_trains_two_stage_with_dice_focal_and_task_aware_loss() -> None:
    plan = _with_preset("deepsc-covid")
    assert plan.training.schedule == "two-stage"
    # Trained end to end, as the paper does: the diagnosis's gradient reaches the U-Net.
    assert plan.network == NetworkOptions(
        cross_stitch=True, classifier_input="concat", detach_lesion_input=False
    )
    assert plan.network.fusion == "softmax"  # DeepSC-COVID's fusion
    assert plan.loss.segmentation == "dice_focal"
    assert plan.loss_weights == LossWeights(seg=1.0, cls=1.0, task_aware=10.0)


def test_multir_net_preset_is_eq_1_focal_tversky_and_the_lambda_loss() -> None:
    plan = _with_preset("multir-net")
    assert plan.network == NetworkOptions(
        reverse_attention=True,
        classifier_input="multiply",
        detach_lesion_input=False,
        refinement_passes=2,
        fusion="sigmoid_sum",
    )
    loss = plan.loss
    assert loss.segmentation == "focal_tversky"
    assert (loss.tversky_alpha, loss.tversky_beta, loss.tversky_gamma) == (0.7, 0.3, 0.9)
    # L = lambda * L_cls + (1 - lambda) * L_seg with lambda = 0.5; no task-aware loss.
    assert MULTIR_LAMBDA == 0.5
    assert plan.loss_weights == LossWeights(seg=0.5, cls=0.5, task_aware=0.0)
    assert plan.training.schedule == "joint"


def test_msd_net_preset_is_segmentation_only() -> None:
    plan, base = _with_preset("msd-net"), tiny_plan()
    assert plan.loss_weights == LossWeights(seg=1.0, cls=0.0, task_aware=0.0)
    assert plan.loss.segmentation == "focal" and plan.loss.focal_gamma == 2.0
    assert plan.loss.voxel_class_weights == base.loss.voxel_class_weights != ()
    assert plan.network == NetworkOptions(
        pyramid_conv=True, channel_attention=True, residual_refinement=True
    )
    assert plan.training.schedule == "joint"


def test_a_preset_given_at_training_replaces_another_presets_schedule_and_weights() -> None:
    planned = _with_preset("deepsc-covid")
    plan = apply_overrides(planned, preset_overrides("multir-net"))
    assert plan.training.schedule == "joint"
    assert plan.loss_weights.task_aware == 0.0
    again = apply_overrides(_with_preset("msd-net"), preset_overrides("deepsc-covid"))
    assert again.training.schedule == "two-stage"
    assert again.loss_weights == LossWeights(seg=1.0, cls=1.0, task_aware=10.0)
