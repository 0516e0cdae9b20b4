"""``--set`` overrides of plan switches."""

from __future__ import annotations

import pytest

from autojoint.planning.overrides import apply_overrides, available_overrides
from tests.fingerprints import tiny_plan


def test_overrides_are_typed_and_applied() -> None:
    plan = tiny_plan()
    new = apply_overrides(
        plan,
        [
            "network.reverse_attention=true",
            "network.refinement_passes=2",
            "loss.tversky_alpha=0.6",
            "loss_weights.task_aware=0",
            "network.classifier_input=multiply",
        ],
    )
    assert new.network.reverse_attention is True
    assert new.network.refinement_passes == 2
    assert new.loss.tversky_alpha == pytest.approx(0.6)
    assert new.loss_weights.task_aware == 0.0
    assert new.network.classifier_input == "multiply"
    # Everything else is untouched.
    assert new.patch_size == plan.patch_size and new.loss_weights.seg == plan.loss_weights.seg
    assert apply_overrides(plan, []) == plan


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("network.nope=1", "network.reverse_attention"),
        ("reverse_attention=true", "SECTION.FIELD=VALUE"),
        ("network.reverse_attention", "SECTION.FIELD=VALUE"),
        ("network.reverse_attention=maybe", "true/false"),
        ("network.refinement_passes=two", "integer"),
        ("network.refinement_passes=-1", "refinement_passes must be >= 0"),
        ("network.classifier_input=add", "concat"),
    ],
)
def test_bad_overrides_are_explained(item: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        apply_overrides(tiny_plan(), [item])


def test_available_overrides_cover_every_switch() -> None:
    keys = available_overrides(tiny_plan())
    assert "network.cross_stitch" in keys and "loss.segmentation" in keys
    assert "loss_weights.task_aware" in keys
