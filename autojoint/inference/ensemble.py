"""The trained folds of one plan, loaded for prediction: which folds exist, their networks
and the axes each fold's training mirrored (what test-time augmentation mirrors)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from autojoint.io.workdir import DEFAULT_VARIANT, fold_dir, variant_dir
from autojoint.networks.joint_net import JointNet
from autojoint.planning.schema import Plan
from autojoint.runtime.checkpoint import (
    CHECKPOINTS,
    FINAL_CHECKPOINT,
    load_weights,
    read_checkpoint,
)
from autojoint.runtime.devices import start_worker_threads_flushed

__all__ = [
    "DEFAULT_CHECKPOINT",
    "Ensemble",
    "available_folds",
    "check_checkpoint_name",
    "load_ensemble",
]

DEFAULT_CHECKPOINT = FINAL_CHECKPOINT


@dataclass(frozen=True)
class Ensemble:
    """The networks of several folds of one plan, with each fold's mirror axes."""

    plan: Plan
    folds: tuple[str, ...]
    nets: tuple[JointNet, ...]
    mirror_axes: tuple[tuple[int, ...], ...]


def check_checkpoint_name(name: str) -> None:
    """Refuse anything but the trainer's checkpoint file names (never a path).

    Raises:
        ValueError: ``name`` is not one of ``CHECKPOINTS``.
    """
    if name not in CHECKPOINTS:
        raise ValueError(
            f"unknown checkpoint '{name}'; choose one of {', '.join(CHECKPOINTS)} "
            "(files the trainer writes in each fold folder)."
        )


def available_folds(
    work_dir: Path,
    configuration: str = "fullres",
    checkpoint: str = DEFAULT_CHECKPOINT,
    variant: str = DEFAULT_VARIANT,
) -> list[str]:
    """Folds of ``variant``'s ``configuration`` holding ``checkpoint``, used when ``-f`` is
    not given."""
    check_checkpoint_name(checkpoint)
    base = variant_dir(work_dir, variant, configuration)
    return sorted(p.parent.name.removeprefix("fold_") for p in base.glob(f"fold_*/{checkpoint}"))


def load_ensemble(
    work_dir: Path,
    folds: list[str],
    device: torch.device,
    configuration: str = "fullres",
    checkpoint: str = DEFAULT_CHECKPOINT,
    variant: str = DEFAULT_VARIANT,
) -> Ensemble:
    """Load ``checkpoint`` (a file name in ``CHECKPOINTS``) of each fold of ``variant``, in
    eval mode on ``device``; all must share one plan.

    Raises:
        FileNotFoundError: a fold without ``checkpoint``.
        ValueError: an unknown checkpoint name, no folds, folds of different plans, or a
            checkpoint that cannot be read or does not fit its plan's network.
    """
    check_checkpoint_name(checkpoint)
    start_worker_threads_flushed()  # reading the checkpoints would start them unflushed
    plan: Plan | None = None
    nets, axes = [], []
    for fold in folds:
        path = fold_dir(work_dir, fold, configuration, variant) / checkpoint
        ckpt = read_checkpoint(path, device)
        if plan is not None and ckpt.plan != plan:
            raise ValueError(
                f"fold {fold} was trained with a different plan; ensemble folds of one plan."
            )
        plan = ckpt.plan
        net = JointNet(plan)
        load_weights(net, ckpt, path)
        nets.append(net.to(device).eval())
        axes.append(ckpt.mirror_axes)
    if plan is None:
        raise ValueError("no folds given.")
    return Ensemble(plan, tuple(folds), tuple(nets), tuple(axes))
