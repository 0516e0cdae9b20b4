"""``--set`` overrides of plan switches."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest

from autojoint.cli import plan as cli_plan
from autojoint.io.workdir import PLANS_FILE
from autojoint.pipeline import plan_and_preprocess, plan_with_overrides
from autojoint.planning.overrides import (
    apply_overrides,
    available_overrides,
    check_override_keys,
)
from autojoint.planning.planner import plan_experiment
from autojoint.planning.schema import NetworkOptions, Plan
from autojoint.training.budget import warn_if_switches_exceed_budget
from tests.fingerprints import make_fingerprint, tiny_plan
from tests.synthetic import make_raw_dataset


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


# --- overrides at planning time (autojoint_plan --preset / --set) ---------------------------


def test_plan_time_switches_enter_the_memory_fit() -> None:
    fp = make_fingerprint([(1.0, 1.0, 1.0)] * 6, [(96, 160, 160)] * 6)
    args = {"memory_budget_gb": 0.2, "device_profile": "cpu", "base_features": 8}
    items = ("network.refinement_passes=2", "loss.segmentation=focal_tversky")
    plain = plan_experiment(fp, **args)
    planned = plan_with_overrides(fp, items, **args)
    # Known answer: the planner run with those switches, then the other items applied.
    expected = apply_overrides(
        plan_experiment(fp, network=NetworkOptions(refinement_passes=2), **args), items
    )
    assert (planned.patch_size, planned.batch_size, planned.topology) == (
        expected.patch_size,
        expected.batch_size,
        expected.topology,
    )
    assert planned.network == expected.network and planned.loss == expected.loss
    assert "entered the memory fit" in planned.reasons["overrides"]
    assert planned.network.refinement_passes == 2
    assert planned.loss.segmentation == "focal_tversky"
    # Three U-Net passes do not fit the plain patch and batch: the fit shrank them.
    assert math.prod(planned.patch_size) * planned.batch_size < (
        math.prod(plain.patch_size) * plain.batch_size
    )
    assert planned.estimated_memory_gb <= args["memory_budget_gb"]
    # Loss-only items keep the plain fit.
    assert plan_with_overrides(fp, ("loss_weights.task_aware=0",), **args).patch_size == (
        plain.patch_size
    )


def test_train_time_switches_over_budget_are_reported(caplog: pytest.LogCaptureFixture) -> None:
    fp = make_fingerprint([(1.0, 1.0, 1.0)] * 6, [(96, 160, 160)] * 6)
    stored = plan_experiment(fp, memory_budget_gb=0.2, device_profile="cpu", base_features=8)
    heavy = apply_overrides(stored, ["network.refinement_passes=2"])
    with caplog.at_level(logging.WARNING):
        estimate = warn_if_switches_exceed_budget(stored, heavy)
    assert estimate is not None and estimate > stored.memory_budget_gb
    assert "autojoint_plan" in caplog.text and "--preset" in caplog.text
    # Same switches, or loss-only changes: nothing to say.
    assert warn_if_switches_exceed_budget(stored, stored) is None
    light = apply_overrides(stored, ["loss_weights.task_aware=0"])
    assert warn_if_switches_exceed_budget(stored, light) is None


def test_unknown_key_is_refused_before_any_planning_work(tmp_path: Path) -> None:
    check_override_keys(["network.pyramid_conv=true", "loss_weights.cls=2"])
    with pytest.raises(ValueError, match="network.pyramid_convv"):
        check_override_keys(["network.pyramid_convv=true"])
    raw = make_raw_dataset(tmp_path / "raw", num_cases=2)
    with pytest.raises(ValueError, match="expected SECTION.FIELD=VALUE"):
        plan_and_preprocess(raw, tmp_path / "work", overrides=["netwrk.cross_stitch=true"])
    assert not (tmp_path / "work").exists()


def test_cli_plan_preset_is_stored_in_plans_json(tmp_path: Path) -> None:
    raw = make_raw_dataset(tmp_path / "raw", num_cases=3)
    work = tmp_path / "work"
    args = ["-d", str(raw), "-w", str(work), "--no-preprocess", "--preset", "multir-net"]
    assert cli_plan.main([*args, "--set", "network.refinement_passes=1"]) == 0
    plan = Plan.load(work / PLANS_FILE)
    assert plan.network.reverse_attention is True
    assert plan.network.classifier_input == "multiply"
    assert plan.network.refinement_passes == 1  # --set after the preset wins
    assert plan.loss.segmentation == "focal_tversky"
    assert "multir-net" not in plan.reasons["overrides"]  # the items, as applied
    assert "network.refinement_passes=1" in plan.reasons["overrides"]
    # --preset/--set only make sense when planning.
    for bad in (["--explain", "-w", str(work)], ["--verify", "-d", str(raw)]):
        with pytest.raises(SystemExit):
            cli_plan.main([*bad, "--preset", "msd-net"])


@pytest.mark.parametrize("value", ["0.5,2,4", "[0.5, 2, 4]", "(0.5,2,4)", " 0.5 , 2 ,4 "])
def test_tuple_fields_take_comma_separated_values(value: str) -> None:
    plan = tiny_plan()  # labels background, ground_glass, consolidation
    new = apply_overrides(plan, [f"loss.voxel_class_weights={value}"])
    assert new.loss.voxel_class_weights == (0.5, 2.0, 4.0)
    assert all(type(w) is float for w in new.loss.voxel_class_weights)
    assert apply_overrides(new, ["loss.ce_class_weights=[]"]).loss.ce_class_weights == ()
    assert apply_overrides(new, ["loss.voxel_class_weights="]).loss.voxel_class_weights == ()


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("loss.voxel_class_weights=1,two,3", "expected a number, got 'two'"),
        ("loss.voxel_class_weights=1,2", "voxel_class_weights needs one positive weight per"),
        ("loss.ce_class_weights=1,0,2", r"loss.ce_class_weights\[1\] must be > 0"),
        ("loss_weights.task_aware=-1", "loss_weights.task_aware must be >= 0"),
    ],
)
def test_bad_tuple_and_bounded_values_are_explained(item: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        apply_overrides(tiny_plan(), [item])
