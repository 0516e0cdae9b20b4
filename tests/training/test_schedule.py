"""Optimisers, learning-rate curves and the two-stage scheme's parameter freezing."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from autojoint.planning.schema import LossWeights
from autojoint.training.config import TrainerConfig
from autojoint.training.schedule import (
    PAST_CHANCE,
    Stage,
    learning_rate,
    make_optimizer,
    plan_stages,
    ramped_loss_weights,
    set_trainable,
    stage_loss_weights,
    stage_of,
    stage_parameters,
    task_aware_ramp,
)
from autojoint.training.step import make_grad_scaler, train_step
from tests.fingerprints import tiny_plan
from tests.helpers import random_batch, seeded_net, train_step_options


def test_joint_schedule_is_one_poly_stage() -> None:
    (stage,) = plan_stages("joint", 10)
    assert (stage.name, stage.num_epochs, stage.decay) == ("joint", 10, "poly")
    assert learning_rate(stage, 0, 1e-2) == pytest.approx(1e-2)
    assert learning_rate(stage, 5, 1e-2) == pytest.approx(1e-2 * 0.5**0.9)
    assert learning_rate(stage, 9, 1e-2) == pytest.approx(1e-2 * 0.1**0.9)


@pytest.mark.parametrize("epochs", [3, 4, 10, 100, 1000])
def test_two_stage_split_covers_every_epoch_once(epochs: int) -> None:
    stages = plan_stages("two-stage", epochs)
    assert [s.name for s in stages] == ["segmentation", "classification", "joint"]
    assert all(s.num_epochs >= 1 for s in stages)
    assert sum(s.num_epochs for s in stages) == epochs
    for a, b in itertools.pairwise(stages):
        assert b.first_epoch == a.first_epoch + a.num_epochs
    assert [stage_of(stages, e) for e in range(epochs)] == sorted(
        stage_of(stages, e) for e in range(epochs)
    )
    if epochs == 100:
        assert [s.num_epochs for s in stages] == [40, 20, 40]
    # Linear decay inside each stage; fine-tuning at a tenth of the rate (1e-3 -> 1e-4).
    fine = stages[2]
    assert learning_rate(fine, fine.first_epoch, 1e-3) == pytest.approx(1e-4)
    assert learning_rate(stages[0], 0, 1e-3) == pytest.approx(1e-3)


def test_bad_schedule_and_optimizer_are_refused() -> None:
    with pytest.raises(ValueError, match="schedule"):
        plan_stages("three-stage", 10)
    with pytest.raises(ValueError, match="at least 3 epochs"):
        plan_stages("two-stage", 2)
    with pytest.raises(ValueError, match="optimizer"):
        TrainerConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="augmentation"):
        TrainerConfig(augmentation="heavy")


def test_sgd_is_nesterov_099_and_adam_has_paper_betas() -> None:
    p = [torch.nn.Parameter(torch.zeros(2))]
    sgd = make_optimizer("sgd", p, 1e-2, 3e-5)
    assert isinstance(sgd, torch.optim.SGD)
    g = sgd.param_groups[0]
    assert (g["momentum"], g["nesterov"], g["lr"], g["weight_decay"]) == (0.99, True, 1e-2, 3e-5)
    adam = make_optimizer("adam", p, 1e-3, 0.0)
    assert isinstance(adam, torch.optim.Adam) and adam.param_groups[0]["betas"] == (0.9, 0.999)
    assert (TrainerConfig().optimizer, TrainerConfig().lr) == ("sgd", 1e-2)
    two = TrainerConfig(schedule="two-stage")
    assert (two.optimizer, two.learning_rate) == ("adam", 1e-3)
    assert TrainerConfig(optimizer="sgd", learning_rate=0.1).lr == 0.1


@pytest.mark.parametrize("name", ["segmentation", "classification", "joint"])
def test_each_stage_changes_only_its_parameters(name: str) -> None:
    plan = tiny_plan()
    net = seeded_net(plan)
    stage = Stage(name, 0, 1, 1.0, "linear")
    params = stage_parameters(net, stage)
    set_trainable(net, params)
    opt = make_optimizer("adam", params, 1e-3, 3e-5)
    before = {k: v.detach().clone() for k, v in net.state_dict().items()}
    weights = stage_loss_weights(LossWeights(seg=1.0, cls=1.0, task_aware=10.0), stage)
    for step in range(2):
        train_step(
            net,
            net,
            random_batch(plan, step),
            opt,
            make_grad_scaler(torch.device("cpu")),
            **train_step_options(plan, params, weights),
        )
    changed = {k for k, v in net.state_dict().items() if not torch.equal(v, before[k])}
    seg_keys = {f"seg.{k}" for k, _ in net.seg.named_parameters()}
    cls_keys = {f"cls.{k}" for k, _ in net.cls.named_parameters()}  # type: ignore[union-attr]
    if name == "segmentation":
        assert changed and changed <= seg_keys
    elif name == "classification":
        assert changed and changed <= cls_keys
    else:
        assert changed & seg_keys and changed & cls_keys
    # Pre-training stages use only their own loss terms.
    assert (weights.cls, weights.task_aware) == (
        (0.0, 0.0) if name == "segmentation" else (1.0, 10.0)
    )
    assert weights.seg == (0.0 if name == "classification" else 1.0)


def test_task_aware_ramp_waits_for_the_classifier_to_pass_chance() -> None:
    """Issue 16, defect 1: l_ta was on from step 0 against an untrained classifier."""
    chance = math.log(3)
    at_chance = [1.1, 1.09, 1.0]  # all above 0.8 ln 3 = 0.879
    assert task_aware_ramp(at_chance, 3, 20) == 0.0
    # First past chance at epoch index 3; ramp over round(0.1 * 20) = 2 epochs.
    history = [*at_chance, 0.85]
    assert PAST_CHANCE * chance > 0.85
    assert task_aware_ramp(history, 3, 20) == pytest.approx(0.5)
    assert task_aware_ramp([*history, 1.2], 3, 20) == 1.0  # once past, it stays on
    assert task_aware_ramp([*history, 0.5, 0.4], 3, 20) == 1.0
    assert task_aware_ramp([], 3, 20) == 0.0
    assert task_aware_ramp([math.nan], 3, 20) == 0.0
    assert task_aware_ramp([], 3, 20, "off") == 1.0
    with pytest.raises(ValueError, match="warm-up"):
        task_aware_ramp([], 3, 20, "later")
    ramped = ramped_loss_weights(LossWeights(seg=1.0, cls=1.0, task_aware=4.0), 0.25)
    assert ramped == LossWeights(seg=1.0, cls=1.0, task_aware=1.0)
