"""The plan's training schedule (``plans.json`` ``training.schedule``) is what
``autojoint_train`` trains unless ``--schedule`` says otherwise: DeepSC-COVID's preset,
given to ``autojoint_plan`` or to ``autojoint_train``, trains two-stage."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from autojoint.cli import train as cli_train
from autojoint.pipeline import plan_and_preprocess
from autojoint.planning.overrides import apply_overrides
from autojoint.planning.presets import preset_overrides
from autojoint.planning.schema import Plan
from autojoint.runtime.checkpoint import load_checkpoint
from autojoint.training.config import PLAN_SCHEDULE, TrainerConfig, resolve_schedule
from tests.fingerprints import tiny_plan
from tests.synthetic import make_raw_dataset

TINY_RUN = ["--iterations-per-epoch", "1", "--augmentation", "none", "--skip-validation"]
PLANNED = ("training.schedule=two-stage",)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A work directory planned with ``autojoint_plan --preset deepsc-covid``."""
    root = tmp_path_factory.mktemp("plan_schedule")
    raw = make_raw_dataset(root / "raw", num_cases=4)
    plan = plan_and_preprocess(raw, root / "work", overrides=preset_overrides("deepsc-covid"))
    assert plan.training.schedule == "two-stage"
    return root / "work"


def _trained(work: Path, *args: str, epochs: int = 3, fold: str = "fold_all") -> dict:
    """``fold``: the fold folder relative to ``work`` (a variant's, for a changed plan)."""
    assert cli_train.main(["all", "-w", str(work), "--epochs", str(epochs), *TINY_RUN, *args]) == 0
    return json.loads((work / fold / "trainer_config.json").read_text(encoding="utf-8"))


@pytest.mark.slow
def test_a_plain_autojoint_train_after_planning_deepsc_covid_trains_two_stage(
    work: Path,
) -> None:
    cfg = _trained(work)
    assert cfg["config"]["schedule"] == "two-stage"  # resolved, never "plan"
    assert (cfg["config"]["optimizer"], cfg["config"]["learning_rate"]) == ("adam", 1e-3)
    assert [s["name"] for s in cfg["stages"]] == ["segmentation", "classification", "joint"]
    log = json.loads((work / "fold_all" / "training_log.json").read_text(encoding="utf-8"))
    assert [e["stage"] for e in log["epochs"]] == ["segmentation", "classification", "joint"]
    assert log["config"]["schedule"] == "two-stage"
    final = load_checkpoint(work / "fold_all" / "checkpoint_final.pt")
    assert final["extra"]["trainer"]["schedule"] == "two-stage"


@pytest.mark.slow
def test_autojoint_train_with_the_deepsc_covid_preset_trains_two_stage(
    work: Path, tmp_path: Path
) -> None:
    # The same preprocessed data under a plan that asks for the joint schedule.
    joint = tmp_path / "work"
    shutil.copytree(work, joint, ignore=shutil.ignore_patterns("fold_*"))
    plan = apply_overrides(Plan.load(joint / "plans.json"), ["training.schedule=joint"])
    plan.save(joint / "plans.json")
    cfg = _trained(joint, "--preset", "deepsc-covid", fold="variants/deepsc-covid/fullres/fold_all")
    assert (cfg["config"]["schedule"], cfg["config"]["optimizer"]) == ("two-stage", "adam")
    assert [s["name"] for s in cfg["stages"]] == ["segmentation", "classification", "joint"]


@pytest.mark.slow
def test_an_explicit_schedule_wins_over_the_plan(work: Path) -> None:
    cfg = _trained(work, "--schedule", "joint", epochs=1)  # two-stage would need 3
    assert (cfg["config"]["schedule"], cfg["config"]["optimizer"]) == ("joint", "sgd")
    assert [s["name"] for s in cfg["stages"]] == ["joint"]


def test_resolution_follows_the_plan_unless_a_schedule_is_given(
    caplog: pytest.LogCaptureFixture,
) -> None:
    two = apply_overrides(tiny_plan(), PLANNED)
    asked = TrainerConfig(schedule=PLAN_SCHEDULE, epochs=10)
    assert (asked.optimizer, asked.learning_rate) == ("auto", None)  # waits for the plan
    resolved = resolve_schedule(asked, two)
    assert (resolved.schedule, resolved.optimizer, resolved.lr) == ("two-stage", "adam", 1e-3)
    joint = resolve_schedule(asked, tiny_plan())
    assert (joint.schedule, joint.optimizer, joint.lr) == ("joint", "sgd", 1e-2)
    # An explicit optimiser or learning rate is kept.
    sgd = resolve_schedule(TrainerConfig(schedule=PLAN_SCHEDULE, optimizer="sgd"), two)
    assert (sgd.schedule, sgd.optimizer) == ("two-stage", "sgd")
    # A given schedule wins, with a warning naming both.
    with caplog.at_level(logging.WARNING, logger="autojoint.training.config"):
        mine = resolve_schedule(TrainerConfig(schedule="joint", epochs=10), two)
    assert mine.schedule == "joint" and "plan asks for two-stage" in caplog.text
    with pytest.raises(ValueError, match="two-stage needs at least 3 epochs"):
        resolve_schedule(TrainerConfig(schedule=PLAN_SCHEDULE, epochs=2), two)


def test_the_schedule_is_a_plan_override_and_old_plans_train_joint(tmp_path: Path) -> None:
    plan = tiny_plan()
    assert plan.training.schedule == "joint"
    assert apply_overrides(plan, ["training.schedule=two-stage"]).training.schedule == ("two-stage")
    with pytest.raises(ValueError, match="training.schedule must be one of"):
        apply_overrides(plan, ["training.schedule=three-stage"])
    # A plans.json written before the section existed loads with the defaults.
    path = tmp_path / "plans.json"
    apply_overrides(plan, PLANNED).save(path)
    old = json.loads(path.read_text(encoding="utf-8"))
    assert old.pop("training") == {"schedule": "two-stage"}
    path.write_text(json.dumps(old), encoding="utf-8")
    assert Plan.load(path).training.schedule == "joint"
