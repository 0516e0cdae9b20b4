"""What a trained fold leaves behind: latest/best/final checkpoints (safe to load), the
trainer config with the mirror axes, the progress plot, the EMA criterion, the two-stage
schedule in the log, and a clear error for a corrupt checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from autojoint.pipeline import plan_and_preprocess
from autojoint.runtime.checkpoint import load_checkpoint
from autojoint.training.config import TrainerConfig
from autojoint.training.launch import train_fold
from autojoint.training.progress import epoch_score, update_ema
from tests.synthetic import make_raw_dataset


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("outputs")
    raw = make_raw_dataset(root / "raw", num_cases=5)
    plan_and_preprocess(raw, root / "work")
    return root / "work"


@pytest.mark.slow
def test_fold_outputs(work: Path) -> None:
    config = TrainerConfig(
        epochs=3,
        iterations_per_epoch=1,
        checkpoint_every=2,
        val_iterations=1,
        final_validation=False,
        optimizer="adam",
        learning_rate=1e-3,
        schedule="two-stage",
    )
    out = train_fold(work, "0", config)
    latest = load_checkpoint(out / "checkpoint_latest.pt")
    best = load_checkpoint(out / "checkpoint_best.pt")
    final = load_checkpoint(out / "checkpoint_final.pt")
    assert latest["epoch"] == 3  # every 2 epochs, and always after the last
    assert final["optimizer"] is None and latest["optimizer"] is not None
    for ckpt in (latest, best, final):  # plain data: loads with weights_only=True
        torch.load(out / "checkpoint_final.pt", weights_only=True)
        assert ckpt["extra"]["augmentation"]["mirror_axes"] == [0, 1, 2]
    assert not list(out.glob(".tmp_*"))  # atomic writes leave no temp files

    log = json.loads((out / "training_log.json").read_text(encoding="utf-8"))
    epochs = log["epochs"]
    assert [e["stage"] for e in epochs] == ["segmentation", "classification", "joint"]
    assert epochs[2]["lr"] == pytest.approx(1e-4)  # fine-tuning at a tenth
    ema = None
    for e in epochs:
        assert "val_loss_total" in e and "seconds" in e
        ema = update_ema(ema, epoch_score(e))
        assert e["val_ema"] == pytest.approx(ema)
    best_epoch = max(range(3), key=lambda i: (epochs[i]["val_ema"], -i)) + 1
    assert best["epoch"] == best_epoch

    cfg = json.loads((out / "trainer_config.json").read_text(encoding="utf-8"))
    assert cfg["augmentation"]["mirror_axes"] == [0, 1, 2]
    assert cfg["config"]["schedule"] == "two-stage"
    assert [s["name"] for s in cfg["stages"]] == ["segmentation", "classification", "joint"]
    assert (out / "progress.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ema_formula() -> None:
    assert epoch_score({"val_view_dice": 0.4, "val_accuracy": 0.8}) == pytest.approx(0.6)
    assert epoch_score({"val_accuracy": 0.5}) == 0.5 and epoch_score({}) is None
    assert update_ema(None, 0.5) == 0.5
    assert update_ema(0.5, 1.0) == pytest.approx(0.55)
    assert update_ema(0.5, None) == 0.5


def test_corrupt_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint_latest.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot be loaded as an autojoint checkpoint"):
        load_checkpoint(path)
    torch.save({"format_version": 99}, path)
    with pytest.raises(ValueError, match="format 99"):
        load_checkpoint(path)
