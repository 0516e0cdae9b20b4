"""A run killed after epoch 2 and resumed with --continue equals a straight run."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import torch

from autojoint.io.files import read_json
from autojoint.pipeline import plan_and_preprocess
from autojoint.runtime.checkpoint import load_checkpoint
from autojoint.training import trainer
from autojoint.training.config import TrainerConfig
from autojoint.training.launch import train_fold
from tests.synthetic import make_raw_dataset

# All slow: each test trains, or (refusing other options) needs the checkpoint the first left.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def work_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("resume")
    raw = make_raw_dataset(root / "raw", num_cases=5)
    a, b = root / "straight", root / "resumed"
    plan_and_preprocess(raw, a)
    plan_and_preprocess(raw, b)
    return a, b


@pytest.mark.parametrize("schedule", ["joint", "two-stage"])
def test_kill_and_continue_equals_straight_run(
    work_dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, schedule: str
) -> None:
    """Two-stage: the kill falls on the change from segmentation to classification
    pre-training (epochs 2 | 1 | 1), so the resumed run must start the next stage's
    optimiser exactly as the straight run did."""
    straight, resumed = work_dirs
    for work in work_dirs:  # the other parametrisation's fold
        shutil.rmtree(work / "fold_all", ignore_errors=True)
    optimizer = "adam" if schedule == "two-stage" else "sgd"
    config = TrainerConfig(
        epochs=4,
        iterations_per_epoch=2,
        seed=7,
        checkpoint_every=1,
        schedule=schedule,
        optimizer=optimizer,
    )
    train_fold(straight, "all", config)

    real_write_json = trainer.write_json
    calls = {"n": 0}

    def write_then_die(obj: object, path: Path) -> None:
        real_write_json(obj, path)
        calls["n"] += Path(path).name == "training_log.json"
        # Killed once epoch 3's log is written, before its checkpoint (the log goes first):
        # the latest checkpoint is epoch 2's, and the log's epoch-3 record must not survive
        # twice when the resumed run repeats epoch 3.
        if calls["n"] == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "write_json", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_fold(resumed, "all", config)
    monkeypatch.setattr(trainer, "write_json", real_write_json)
    assert load_checkpoint(resumed / "fold_all" / "checkpoint_latest.pt")["epoch"] == 2
    assert not (resumed / "fold_all" / "checkpoint_final.pt").exists()

    train_fold(resumed, "all", dataclasses.replace(config, resume=True))
    a = load_checkpoint(straight / "fold_all" / "checkpoint_final.pt")["network"]
    b = load_checkpoint(resumed / "fold_all" / "checkpoint_final.pt")["network"]
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    log = read_json(resumed / "fold_all" / "training_log.json")
    assert [e["epoch"] for e in log["epochs"]] == [1, 2, 3, 4]


def test_continue_refuses_other_options(work_dirs: tuple[Path, Path]) -> None:
    _, resumed = work_dirs
    config = TrainerConfig(
        epochs=4,
        iterations_per_epoch=2,
        seed=7,
        resume=True,
        plan_overrides=("network.reverse_attention=true",),
    )
    with pytest.raises(ValueError, match="different plan"):
        train_fold(resumed, "all", config)


def test_continue_without_checkpoint_starts_fresh(tmp_path: Path) -> None:
    raw = make_raw_dataset(tmp_path / "raw", num_cases=3)
    plan_and_preprocess(raw, tmp_path / "w")
    out = train_fold(
        tmp_path / "w", "all", TrainerConfig(epochs=1, iterations_per_epoch=1, resume=True)
    )
    assert (out / "checkpoint_final.pt").is_file()
