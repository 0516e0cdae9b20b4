"""The plan file read through its dataclasses: older plans, bounds and consistency."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from autojoint.io.image_io import SLICE_SPACING_2D_MM
from autojoint.planning.planner import plan_experiment
from autojoint.planning.schema import MIN_BATCH_SIZE, Plan
from tests.fingerprints import make_fingerprint, tiny_plan


def _volumes(**kw: Any) -> Plan:
    """A 3D dataset large enough for a lowres configuration."""
    fp = make_fingerprint([(2.5, 0.7, 0.7)] * 4, [(60, 300, 300)] * 4, **kw)
    return plan_experiment(fp, memory_budget_gb=0.4, device_profile="cpu", base_features=8)


def _slices(**kw: Any) -> Plan:
    fp = make_fingerprint(
        [(SLICE_SPACING_2D_MM, 0.7, 0.7)] * 4, [(1, 96, 96)] * 4, is_2d=True, **kw
    )
    return plan_experiment(fp, memory_budget_gb=0.4, device_profile="cpu", base_features=8)


def _as_json(plan: Plan) -> dict[str, Any]:
    """What ``plan.save`` writes, as read back by ``json``."""
    return json.loads(json.dumps(dataclasses.asdict(plan)))


def test_is_2d_is_stored_and_kept_by_the_configurations() -> None:
    volumes, slices = _volumes(), _slices()
    assert not volumes.is_2d and slices.is_2d
    # The 2d configuration of a 3D dataset is still of volumes: a model of it cannot
    # predict a 2D image.
    assert not volumes.for_configuration("2d").is_2d
    assert _as_json(slices)["is_2d"] is True


def test_plans_without_is_2d_read_it_by_the_old_rule() -> None:
    """Plans and checkpoints written before ``is_2d`` was stored: a 2D dataset's top level is
    the 2d configuration with a median of one slice; a 3D dataset's 2d configuration (in
    a checkpoint trained with -c 2d) keeps the volumes' depth."""
    for plan, expected in [
        (_slices(), True),
        (_volumes(), False),
        (_volumes().for_configuration("2d"), False),
        (_volumes().for_configuration("lowres"), False),
    ]:
        old = _as_json(plan)
        del old["is_2d"]
        loaded = Plan.from_dict(old)
        assert loaded.is_2d is expected
        assert loaded == plan


def test_plans_with_an_empty_view_read_it_as_none(tmp_path: Path) -> None:
    """Plans of datasets without diagnoses wrote classification_shape (0, 0, 0), also in
    lowres and two_d; they load with None, as the planner now writes."""
    plan = _volumes(classes=())
    assert plan.classification_shape is None
    assert plan.two_d is not None and plan.two_d.classification_shape is None
    old = _as_json(plan)
    old["classification_shape"] = [0, 0, 0]
    old["two_d"]["classification_shape"] = [0, 0, 0]
    old["lowres"]["classification_shape"] = [0, 0, 0]
    del old["autojoint_version"]
    path = tmp_path / "plans.json"
    path.write_text(json.dumps(old), encoding="utf-8")
    loaded = Plan.load(path)
    assert loaded.classification_shape is None and loaded.two_d is not None
    assert loaded.two_d.classification_shape is None
    assert loaded.lowres is not None and loaded.lowres.classification_shape is None
    assert loaded.autojoint_version == "unknown"
    assert dataclasses.replace(loaded, autojoint_version=plan.autojoint_version) == plan
    plan.save(path)
    assert json.loads(path.read_text(encoding="utf-8"))["classification_shape"] is None
    assert Plan.load(path) == plan


def test_plans_from_before_the_detach_switch_keep_training_end_to_end() -> None:
    """A plan written before ``network.detach_lesion_input`` existed trained end to end;
    it loads with the switch off (resuming it must go on that way), while a new plan
    detaches by default."""
    plan = _volumes()
    assert plan.network.detach_lesion_input is True
    old = _as_json(plan)
    del old["network"]["detach_lesion_input"]
    loaded = Plan.from_dict(old)
    assert loaded.network.detach_lesion_input is False
    assert loaded == dataclasses.replace(
        plan, network=dataclasses.replace(plan.network, detach_lesion_input=False)
    )
    del old["network"]  # plans from before the network section: end to end too
    assert Plan.from_dict(old).network == loaded.network


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(batch_size=1), f"batch_size must be >= {MIN_BATCH_SIZE}, got 1"),
        (lambda d: d["two_d"].update(batch_size=1), "two_d.batch_size must be >= 2"),
        (lambda d: d.update(classification_shape=None), "classification_shape is null but"),
        (lambda d: d.update(is_2d=True), "is_2d (a dataset of 2D images) needs"),
        (lambda d: d["loss_weights"].update(cls=-1.0), "loss_weights.cls must be >= 0"),
        (lambda d: d["normalization"][0].update(scheme="minmax"), "must be one of ('ct', 'z"),
        (lambda d: d.update(memory_budget_gb=0), "memory_budget_gb must be > 0, got 0"),
    ],
)
def test_values_outside_the_schema_are_refused(change: Any, message: str) -> None:
    d = _as_json(_volumes())
    change(d)
    with pytest.raises(ValueError, match="invalid plan") as err:
        Plan.from_dict(d, source="plans.json")
    assert message in str(err.value)


def test_a_view_without_classes_is_refused() -> None:
    plan = tiny_plan(classes=())
    bad = dataclasses.replace(plan, classification_shape=(4, 4, 4))
    assert bad.validate() == ["classification_shape must be null: the plan has no classes"]
