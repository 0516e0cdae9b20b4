"""The checkpoint record: what the trainer writes reads back typed, and files in the layout
of earlier releases (a dict with an ``extra`` dict) still load."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from autojoint.networks.joint_net import JointNet
from autojoint.runtime.checkpoint import (
    CHECKPOINT_FORMAT_VERSION,
    DEFAULT_MIRROR_AXES,
    Checkpoint,
    TrainingRecord,
    load_checkpoint,
    load_weights,
    read_checkpoint,
    save_checkpoint,
    write_checkpoint,
)
from tests.fingerprints import tiny_plan


@pytest.fixture(scope="module")
def net_and_optimizer() -> tuple[JointNet, torch.optim.Optimizer]:
    torch.manual_seed(0)
    net = JointNet(tiny_plan())
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()  # an optimiser state with tensors in it
    return net, optimizer


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert list(a) == list(b)
    for name, value in a.items():
        torch.testing.assert_close(b[name], value, rtol=0, atol=0)


def test_a_checkpoint_in_the_dict_layout_loads_into_the_record(
    tmp_path: Path, net_and_optimizer: tuple[JointNet, torch.optim.Optimizer]
) -> None:
    """A file written as the trainer wrote ``checkpoint_latest.pt`` before the record
    existed: top-level dict, the run's state in ``extra``."""
    net, optimizer = net_and_optimizer
    plan = tiny_plan()
    augmentation = {
        "preset": "light",
        "mirror_axes": [1, 2],
        "rotation_axes": [],
        "loaded_patch_size": [16, 32, 32],
        "interpolation_order": 1,
    }
    rng = {"torch": torch.get_rng_state(), "numpy": {"state": [1, 2, 3]}}
    state = {
        "format_version": 1,
        "autojoint_version": "0.1.0",
        "plan": asdict(plan),
        "epoch": 7,
        "network": net.state_dict(),
        "optimizer": optimizer.state_dict(),
        "extra": {
            "fold": "2",
            "trainer": {"epochs": 10, "schedule": "joint", "plan_overrides": []},
            "augmentation": augmentation,
            "stage": 1,
            "grad_scaler": {"scale": 1.0},
            "ema": None,
            "best_ema": 0.25,
            "rng": rng,
        },
    }
    path = tmp_path / "checkpoint_latest.pt"
    torch.save(state, path)

    ckpt = read_checkpoint(path)
    assert ckpt.plan == plan and ckpt.epoch == 7
    assert ckpt.autojoint_version == "0.1.0" and ckpt.format_version == CHECKPOINT_FORMAT_VERSION
    _assert_same_weights(net.state_dict(), ckpt.weights)
    assert ckpt.optimizer is not None and ckpt.optimizer["param_groups"][0]["lr"] == 1e-3
    record = ckpt.training
    assert record.fold == "2" and record.stage == 1
    assert record.trainer == {"epochs": 10, "schedule": "joint", "plan_overrides": []}
    assert record.augmentation == augmentation
    assert ckpt.mirror_axes == record.mirror_axes == (1, 2)
    assert record.grad_scaler == {"scale": 1.0}
    assert record.ema is None and record.best_ema == 0.25
    assert record.rng is not None
    torch.testing.assert_close(record.rng["torch"], rng["torch"])
    fresh = JointNet(plan)
    load_weights(fresh, ckpt, path)
    _assert_same_weights(net.state_dict(), fresh.state_dict())


def test_the_final_checkpoint_layout_and_a_bare_one_load(
    tmp_path: Path, net_and_optimizer: tuple[JointNet, torch.optim.Optimizer]
) -> None:
    net, _ = net_and_optimizer
    plan = tiny_plan()
    base = {
        "format_version": 1,
        "autojoint_version": "0.1.0",
        "plan": asdict(plan),
        "epoch": 3,
        "network": net.state_dict(),
        "optimizer": None,
    }
    final = {**base, "extra": {"fold": "all", "trainer": {}, "augmentation": {"mirror_axes": []}}}
    torch.save(final, tmp_path / "final.pt")
    ckpt = read_checkpoint(tmp_path / "final.pt")
    assert ckpt.training.fold == "all" and ckpt.training.stage is None
    assert ckpt.optimizer is None and ckpt.mirror_axes == ()
    # Without a recorded augmentation: the trainer's default axes; a bare mirror_axes
    # (read by the first predictors) still counts.
    torch.save({**base, "extra": {}}, tmp_path / "bare.pt")
    assert read_checkpoint(tmp_path / "bare.pt").mirror_axes == DEFAULT_MIRROR_AXES
    torch.save({**base, "extra": {"mirror_axes": [2]}}, tmp_path / "axes.pt")
    assert read_checkpoint(tmp_path / "axes.pt").mirror_axes == (2,)


def test_written_records_read_back_in_the_same_layout(
    tmp_path: Path, net_and_optimizer: tuple[JointNet, torch.optim.Optimizer]
) -> None:
    net, optimizer = net_and_optimizer
    plan = tiny_plan()
    record = TrainingRecord(
        fold="0",
        trainer={"epochs": 2},
        augmentation={"preset": "default", "mirror_axes": [0, 1, 2]},
        stage=0,
        grad_scaler={},
        ema=0.5,
        best_ema=0.5,
    )
    path = tmp_path / "checkpoint_latest.pt"
    save_checkpoint(path, net=net, optimizer=optimizer, plan=plan, epoch=2, extra=record)
    state = load_checkpoint(path)  # the on-disk dict, read with weights_only=True
    assert state["format_version"] == CHECKPOINT_FORMAT_VERSION and state["epoch"] == 2
    assert state["extra"] == {
        "fold": "0",
        "trainer": {"epochs": 2},
        "augmentation": {"preset": "default", "mirror_axes": [0, 1, 2]},
        "stage": 0,
        "grad_scaler": {},
        "ema": 0.5,
        "best_ema": 0.5,
    }
    ckpt = read_checkpoint(path)
    assert ckpt.training == record and ckpt.plan == plan
    _assert_same_weights(net.state_dict(), ckpt.weights)
    # The record writes back unchanged.
    write_checkpoint(tmp_path / "copy.pt", ckpt)
    again = load_checkpoint(tmp_path / "copy.pt")
    assert again["extra"] == state["extra"] and again["plan"] == state["plan"]
    assert again["optimizer"] is not None and set(again) == set(state)
    bare = Checkpoint(plan=plan, weights=net.state_dict(), epoch=0)
    write_checkpoint(tmp_path / "bare.pt", bare)
    assert load_checkpoint(tmp_path / "bare.pt")["extra"] == {}


def test_a_checkpoint_with_a_malformed_plan_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint_final.pt"
    torch.save({"format_version": 1, "plan": {"schema_version": -1}, "epoch": 0}, path)
    with pytest.raises(ValueError, match="checkpoint_final.pt"):
        read_checkpoint(path)
