"""The trained folds of one plan, loaded for prediction: which folds exist, their networks
and the axes each fold's training mirrored (what test-time augmentation mirrors)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from autojoint.io.workdir import DEFAULT_VARIANT, PLANS_FILE, fold_dir, variant_dir
from autojoint.networks.joint_net import JointNet
from autojoint.planning.overrides import apply_overrides
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
    "plan_changes_since_training",
]

logger = logging.getLogger(__name__)

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


def plan_changes_since_training(
    work_dir: Path, trained: Plan, configuration: str, overrides: Sequence[str]
) -> list[str]:
    """Plan fields in which ``WORK/plans.json`` (with the run's ``--preset``/``--set``
    items ``overrides``) now differs from the plan a model was ``trained`` with.

    A checkpoint predicts with the plan stored in it, as it must (its weights fit that
    network), so an edit of plans.json after training changes nothing until the model is
    retrained; this says so instead of leaving the edit silently ignored. [] when the plans
    agree, or when plans.json is absent or unreadable (then there is no edit to report).
    """
    try:
        stored = Plan.load_configuration(work_dir, configuration)
        current = apply_overrides(stored, overrides)
    except (OSError, ValueError):
        return []
    return [f.name for f in fields(Plan) if getattr(current, f.name) != getattr(trained, f.name)]


def _note_plan_changes(
    work_dir: Path, trained: Plan, configuration: str, trainer: dict | None, path: Path
) -> None:
    """Warn when plans.json was edited after ``path`` was trained (see
    :func:`plan_changes_since_training`); a checkpoint that did not record its overrides
    (an older trainer) is not compared."""
    if not trainer or "plan_overrides" not in trainer:
        return
    changed = plan_changes_since_training(
        work_dir, trained, configuration, tuple(trainer["plan_overrides"])
    )
    if changed:
        logger.warning(
            "%s differs from the plan %s was trained with (%s): predicting with the trained "
            "plan stored in the checkpoint. To use the edited plan, train again under a new "
            "name (autojoint_train FOLD --variant NAME).",
            Path(work_dir) / PLANS_FILE,
            path,
            ", ".join(changed),
        )


def load_ensemble(
    work_dir: Path,
    folds: list[str],
    device: torch.device,
    configuration: str = "fullres",
    checkpoint: str = DEFAULT_CHECKPOINT,
    variant: str = DEFAULT_VARIANT,
) -> Ensemble:
    """Load ``checkpoint`` (a file name in ``CHECKPOINTS``) of each fold of ``variant``, in
    eval mode on ``device``; all must share one plan. A plan stored in the checkpoints that
    ``WORK/plans.json`` no longer gives is predicted with, and logged as a warning.

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
        if plan is None:
            _note_plan_changes(work_dir, ckpt.plan, configuration, ckpt.training.trainer, path)
        plan = ckpt.plan
        net = JointNet(plan)
        load_weights(net, ckpt, path)
        nets.append(net.to(device).eval())
        axes.append(ckpt.mirror_axes)
    if plan is None:
        raise ValueError("no folds given.")
    return Ensemble(plan, tuple(folds), tuple(nets), tuple(axes))
