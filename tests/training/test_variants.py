"""Runs that never overwrite each other: the default and a --set variant trained in one work
dir keep their own folders, both predict afterwards, and a run whose plan differs from a
variant's trained folds is refused before it writes anything."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest
import torch

from autojoint.cli import predict as cli_predict
from autojoint.cli import train as cli_train
from autojoint.inference.ensemble import load_ensemble, plan_changes_since_training
from autojoint.io.variants import read_variant_index
from autojoint.io.workdir import VARIANTS_FILE
from autojoint.pipeline import plan_and_preprocess
from autojoint.training.config import TrainerConfig
from autojoint.training.variants import name_variant
from tests.synthetic import make_raw_dataset

BATCH_DICE = "default+loss.batch_dice=true"
TINY = [
    "--epochs",
    "1",
    "--iterations-per-epoch",
    "1",
    "--skip-validation",
    "--augmentation",
    "none",
]


def _snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file of ``folder`` (recursively): content hash and modification time."""
    return {
        p.relative_to(folder).as_posix(): (
            hashlib.sha256(p.read_bytes()).hexdigest(),
            p.stat().st_mtime_ns,
        )
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A work dir with the default variant trained (fold all), then the --set variant."""
    root = tmp_path_factory.mktemp("variants")
    raw = make_raw_dataset(root / "raw", num_cases=3)
    work = root / "work"
    plan_and_preprocess(raw, work)
    assert cli_train.main(["all", "-w", str(work), *TINY]) == 0
    before = _snapshot(work / "fold_all")
    args = ["all", "-w", str(work), "--set", "loss.batch_dice=true", *TINY]
    assert cli_train.main(args) == 0
    one_case = root / "one_case"
    one_case.mkdir()
    (one_case / "case_000_0000.nii.gz").symlink_to(raw / "imagesTr" / "case_000_0000.nii.gz")
    return {"root": root, "work": work, "before": before, "inputs": one_case}


@pytest.mark.slow
def test_second_variant_leaves_the_first_untouched(trained: dict) -> None:
    work = trained["work"]
    assert _snapshot(work / "fold_all") == trained["before"]
    folder = work / "variants" / BATCH_DICE / "fullres" / "fold_all"
    assert (folder / "checkpoint_final.pt").is_file()
    default = load_ensemble(work, ["all"], torch.device("cpu"))
    variant = load_ensemble(work, ["all"], torch.device("cpu"), variant=BATCH_DICE)
    assert not default.plan.loss.batch_dice and variant.plan.loss.batch_dice
    index = read_variant_index(work)
    assert [(r.name, r.folder, r.folds) for r in index.variants] == [
        ("default", ".", ("all",)),
        (BATCH_DICE, f"variants/{BATCH_DICE}/fullres", ("all",)),
    ]
    record = index.find(BATCH_DICE, "fullres")
    assert record is not None
    assert (record.preset, record.overrides) == ("default", ("loss.batch_dice=true",))


@pytest.mark.slow
def test_both_variants_predict(trained: dict, caplog: pytest.LogCaptureFixture) -> None:
    work, root, inputs = trained["work"], trained["root"], trained["inputs"]
    common = ["-i", str(inputs), "-w", str(work), "--no-tta"]
    with caplog.at_level(logging.INFO, logger="autojoint.inference"):
        assert cli_predict.main([*common, "-o", str(root / "pred_default")]) == 0
        assert cli_predict.main([*common, "-o", str(root / "pred_b"), "--variant", BATCH_DICE]) == 0
    used = [r.getMessage() for r in caplog.records if "predicting with variant" in r.getMessage()]
    assert used == [
        f"predicting with variant default ({work})",
        f"predicting with variant {BATCH_DICE} ({work / 'variants' / BATCH_DICE / 'fullres'})",
    ]
    for name in ("pred_default", "pred_b"):
        assert (root / name / "case_000.nii.gz").is_file()
    assert _snapshot(work / "fold_all") == trained["before"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ["--variant", "default", "--set", "loss.batch_dice=true"],  # into the default's folds
        ["--variant", BATCH_DICE],  # the plain plan into the --set variant's folds
    ],
)
def test_training_over_another_plan_is_refused(
    trained: dict, args: list[str], capsys: pytest.CaptureFixture
) -> None:
    work = trained["work"]
    other = work / "variants" / BATCH_DICE / "fullres" / "fold_all"
    kept = _snapshot(other)
    index = (work / VARIANTS_FILE).read_bytes()
    assert cli_train.main(["all", "-w", str(work), *args, *TINY]) == 1
    err = capsys.readouterr().err
    assert "was trained with a different plan" in err and "--variant NAME" in err
    assert _snapshot(work / "fold_all") == trained["before"]
    assert _snapshot(other) == kept
    assert (work / VARIANTS_FILE).read_bytes() == index


@pytest.mark.slow
def test_overrides_that_leave_the_plan_unchanged_train_the_default(trained: dict) -> None:
    work = trained["work"]
    for overrides in [(), ("loss.batch_dice=false",)]:
        named = name_variant(work, TrainerConfig(variant=None, plan_overrides=overrides))
        assert named.variant == "default"
    named = name_variant(work, TrainerConfig(variant=None, plan_overrides=("loss.batch_dice=1",)))
    assert named.variant == BATCH_DICE
    kept = TrainerConfig(plan_overrides=("loss.batch_dice=true",))  # a config built in Python
    assert name_variant(work, kept).variant == "default"


@pytest.mark.slow
def test_plans_json_edited_after_training_is_named_at_prediction(
    trained: dict, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The checkpoint's plan predicts (its weights fit it), and an edit of plans.json
    since training is named instead of silently ignored; a --set variant is compared with
    its own overrides applied, so neither trained variant is reported."""
    work, cpu = trained["work"], torch.device("cpu")
    edited = tmp_path / "edited"
    edited.mkdir()
    plan = json.loads((work / "plans.json").read_text())
    plan["batch_size"] += 1
    (edited / "plans.json").write_text(json.dumps(plan))
    (edited / "fold_all").symlink_to(work / "fold_all")
    with caplog.at_level(logging.WARNING, logger="autojoint.inference"):
        load_ensemble(work, ["all"], cpu)
        load_ensemble(work, ["all"], cpu, variant=BATCH_DICE)
        assert not caplog.records
        ens = load_ensemble(edited, ["all"], cpu)
    assert ens.plan.batch_size == plan["batch_size"] - 1  # the trained plan predicts
    (message,) = [r.getMessage() for r in caplog.records]
    assert f"{edited / 'plans.json'} differs from the plan" in message
    assert "(batch_size)" in message and "--variant NAME" in message
    assert plan_changes_since_training(edited, ens.plan, "fullres", []) == ["batch_size"]
    assert plan_changes_since_training(tmp_path, ens.plan, "fullres", []) == []  # no plans.json


@pytest.mark.slow
def test_work_dir_without_index_still_predicts(trained: dict, tmp_path: Path) -> None:
    """A work dir of an earlier version: no variants.json, folds in WORK/fold_X."""
    work = trained["work"]
    old = tmp_path / "old_work"
    old.mkdir()
    for name in ("plans.json", "fold_all"):
        (old / name).symlink_to(work / name)
    args = ["-i", str(trained["inputs"]), "-o", str(tmp_path / "pred"), "-w", str(old)]
    assert cli_predict.main([*args, "--no-tta"]) == 0
    assert not (old / VARIANTS_FILE).exists()


def test_bad_variant_name_is_a_usage_error(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli_train.main(["all", "-w", "unused", "--variant", "../elsewhere"])
    assert exit_info.value.code == 2
    assert "--variant '../elsewhere'" in capsys.readouterr().err
