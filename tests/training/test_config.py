"""TrainerConfig refuses invalid values when it is built, naming the field."""

from __future__ import annotations

import math

import pytest

from autojoint.training.config import PLAN_SCHEDULE, TrainerConfig


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("checkpoint_every", 0),
        ("epochs", 0),
        ("epochs", -3),
        ("iterations_per_epoch", 0),
        ("num_gpus", 0),
        ("num_workers", -1),
        ("val_iterations", -1),
        ("seed", -1),
        ("learning_rate", 0.0),
        ("learning_rate", -1e-3),
        ("learning_rate", math.nan),
        ("weight_decay", -1e-5),
        ("grad_clip", 0.0),
        ("oversample_foreground", 1.5),
        ("oversample_foreground", -0.1),
    ],
)
@pytest.mark.parametrize("schedule", ["joint", PLAN_SCHEDULE])
def test_out_of_range_values_are_refused_naming_the_field(
    field: str, value: float, schedule: str
) -> None:
    with pytest.raises(ValueError, match=rf"TrainerConfig\.{field} must be"):
        TrainerConfig(schedule=schedule, **{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("augmentation", "heavy"),
        ("task_aware_warmup", "never"),
        ("optimizer", "rmsprop"),
        ("precision", "half"),
    ],
)
@pytest.mark.parametrize("schedule", ["joint", PLAN_SCHEDULE])
def test_unknown_choices_are_refused_naming_the_field(
    field: str, value: str, schedule: str
) -> None:
    with pytest.raises(ValueError, match=rf"unknown TrainerConfig\.{field} '{value}'"):
        TrainerConfig(schedule=schedule, **{field: value})  # type: ignore[arg-type]


def test_edge_values_are_accepted() -> None:
    config = TrainerConfig(
        epochs=1,
        iterations_per_epoch=1,
        checkpoint_every=1,
        num_workers=0,
        val_iterations=0,
        weight_decay=0.0,
        oversample_foreground=1.0,
        grad_clip=math.inf,
    )
    assert (config.optimizer, config.lr) == ("sgd", 1e-2)


def test_the_plan_schedule_leaves_optimizer_and_learning_rate_to_resolution() -> None:
    config = TrainerConfig(schedule=PLAN_SCHEDULE, epochs=2)  # two-stage is checked later
    assert (config.optimizer, config.learning_rate) == ("auto", None)


def test_unknown_schedule_and_too_few_epochs_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown schedule"):
        TrainerConfig(schedule="three-stage")
    with pytest.raises(ValueError, match="at least 3 epochs"):
        TrainerConfig(schedule="two-stage", epochs=2)
