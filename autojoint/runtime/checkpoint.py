"""Checkpoints: weights plus the plan they were trained with, written atomically.

In memory a checkpoint is a :class:`Checkpoint` (what the trainer records beside the weights
is its :class:`TrainingRecord`); on disk it is a dict of tensors and plain Python values, so
it loads with ``torch.load(weights_only=True)`` (no code from the file). Format 1 on disk::

    {"format_version": 1, "autojoint_version": str, "plan": dict, "epoch": int,
     "network": state dict, "optimizer": state dict | None,
     "extra": {"fold", "trainer", "augmentation", "stage", "grad_scaler", "ema",
               "best_ema", "rng"}}

``extra`` holds the :class:`TrainingRecord` fields that are set (each key optional).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from autojoint import __version__
from autojoint.io.files import atomic_write
from autojoint.planning.schema import Plan

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT_VERSION = 1
# The files the trainer writes in each fold folder (docs/training.md).
FINAL_CHECKPOINT = "checkpoint_final.pt"  # end of training: what prediction uses by default
BEST_CHECKPOINT = "checkpoint_best.pt"  # best EMA of the per-epoch validation score
LATEST_CHECKPOINT = "checkpoint_latest.pt"  # for --continue (with optimiser state)
CHECKPOINTS = (FINAL_CHECKPOINT, BEST_CHECKPOINT, LATEST_CHECKPOINT)
# What the trainer's augmentation mirrors (autojoint/data/augmentation.py), used when a
# checkpoint does not record its own mirror axes (checkpoints written before they did).
DEFAULT_MIRROR_AXES = (0, 1, 2)


def trained_mirror_axes(extra: Mapping[str, Any]) -> tuple[int, ...]:
    """Spatial axes (network order) the fold's training mirrored patches along, read from a
    checkpoint's on-disk ``extra``: ``extra["augmentation"]["mirror_axes"]`` (the trainer's
    spec), or a bare ``extra["mirror_axes"]``, else :data:`DEFAULT_MIRROR_AXES`."""
    augmentation = extra.get("augmentation") or {}
    axes = augmentation.get("mirror_axes", extra.get("mirror_axes"))
    if axes is None:
        return DEFAULT_MIRROR_AXES
    return tuple(int(a) for a in axes)


@dataclass(frozen=True)
class TrainingRecord:
    """What the trainer records beside weights and optimiser (on disk: ``extra``).

    Attributes:
        fold: the fold trained (``"0"``..``"4"`` or ``"all"``).
        trainer: the ``TrainerConfig`` as plain values (the config class lives in
            ``training/``, above this module).
        augmentation: the ``AugmentationSpec`` as plain values; its ``mirror_axes`` are
            what test-time augmentation mirrors (see :attr:`mirror_axes`).
        stage: index of the schedule stage being trained (resumable checkpoints only;
            None: a checkpoint that ``--continue`` cannot resume).
        grad_scaler: the gradient scaler's state.
        ema: the smoothed per-epoch validation score (a score, not averaged weights: the
            trainer keeps no weight EMA), and ``best_ema`` its best value so far.
        rng: the random streams (``training/rng_state.py``), for an exact resume.
    """

    fold: str | None = None
    trainer: dict[str, Any] | None = None
    augmentation: dict[str, Any] | None = None
    stage: int | None = None
    grad_scaler: dict[str, Any] | None = None
    ema: float | None = None
    best_ema: float | None = None
    rng: dict[str, Any] | None = None

    @property
    def mirror_axes(self) -> tuple[int, ...]:
        """Spatial axes (network order) training mirrored patches along; the default
        axes when the augmentation was not recorded."""
        return trained_mirror_axes({"augmentation": self.augmentation})

    def to_dict(self) -> dict[str, Any]:
        """The on-disk ``extra``: the fields that are set."""
        return {f.name: v for f in fields(self) if (v := getattr(self, f.name)) is not None}

    @classmethod
    def from_dict(cls, extra: Mapping[str, Any]) -> TrainingRecord:
        """Read an on-disk ``extra``; unknown keys are ignored. A bare ``mirror_axes``
        (read by earlier predictors) becomes the augmentation record."""
        augmentation = extra.get("augmentation")
        if augmentation is None and extra.get("mirror_axes") is not None:
            augmentation = {"mirror_axes": list(trained_mirror_axes(extra))}
        stage = extra.get("stage")
        return cls(
            fold=None if extra.get("fold") is None else str(extra["fold"]),
            trainer=extra.get("trainer"),
            augmentation=augmentation,
            stage=None if stage is None else int(stage),
            grad_scaler=extra.get("grad_scaler"),
            ema=_optional_float(extra.get("ema")),
            best_ema=_optional_float(extra.get("best_ema")),
            rng=extra.get("rng"),
        )


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True, eq=False)  # tensors have no truth value: no field-wise ==
class Checkpoint:
    """One saved network with the plan that builds it (``JointNet(checkpoint.plan)``).

    Attributes:
        plan: the plan the network was trained with (after ``--set``/``--preset``).
        weights: the network's state dict.
        epoch: epochs trained.
        optimizer: the optimiser's state dict (``checkpoint_latest.pt`` only).
        training: what the trainer recorded beside the weights.
        autojoint_version: the version that wrote the file.
        format_version: the on-disk format (:data:`CHECKPOINT_FORMAT_VERSION`).
    """

    plan: Plan
    weights: dict[str, torch.Tensor]
    epoch: int
    optimizer: dict[str, Any] | None = None
    training: TrainingRecord = field(default_factory=TrainingRecord)
    autojoint_version: str = __version__
    format_version: int = CHECKPOINT_FORMAT_VERSION

    @property
    def mirror_axes(self) -> tuple[int, ...]:
        """Spatial axes the training mirrored: what test-time augmentation mirrors."""
        return self.training.mirror_axes

    def to_dict(self) -> dict[str, Any]:
        """The on-disk layout (see the module docstring)."""
        return {
            "format_version": self.format_version,
            "autojoint_version": self.autojoint_version,
            "plan": asdict(self.plan),
            "epoch": self.epoch,
            "network": self.weights,
            "optimizer": self.optimizer,
            "extra": self.training.to_dict(),
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any], source: str = "checkpoint") -> Checkpoint:
        """Read the on-disk layout (as :func:`load_checkpoint` returns it).

        Raises:
            ValueError: the stored plan is malformed or of an unsupported schema.
        """
        return cls(
            plan=Plan.from_dict(state["plan"], source=source),
            weights=state["network"],
            epoch=int(state["epoch"]),
            optimizer=state.get("optimizer"),
            training=TrainingRecord.from_dict(state.get("extra") or {}),
            autojoint_version=str(state.get("autojoint_version", "unknown")),
            format_version=int(state["format_version"]),
        )


def write_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Write ``checkpoint`` atomically (temporary file + rename) in the on-disk layout."""
    buf = io.BytesIO()
    torch.save(checkpoint.to_dict(), buf)
    atomic_write(path, lambda fh: fh.write(buf.getvalue()), binary=True)
    logger.debug("wrote %s (epoch %d)", path, checkpoint.epoch)


def save_checkpoint(
    path: Path,
    *,
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    plan: Plan,
    epoch: int,
    extra: TrainingRecord | None = None,
) -> None:
    """Write the checkpoint of ``net`` (and ``optimizer``) trained with ``plan``."""
    write_checkpoint(
        path,
        Checkpoint(
            plan=plan,
            weights=net.state_dict(),
            epoch=epoch,
            optimizer=optimizer.state_dict() if optimizer is not None else None,
            training=extra or TrainingRecord(),
        ),
    )


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint's on-disk dict safely (``weights_only=True``) and check its format;
    :func:`read_checkpoint` returns it as a :class:`Checkpoint`.

    Raises:
        FileNotFoundError: no such checkpoint (train the fold first).
        ValueError: unreadable file or unknown format version.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint; run autojoint_train for this fold first.")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for corrupt/unsafe files
        raise ValueError(f"{path}: cannot be loaded as an autojoint checkpoint ({err}).") from err
    if not isinstance(state, dict) or state.get("format_version") != CHECKPOINT_FORMAT_VERSION:
        found = state.get("format_version") if isinstance(state, dict) else "?"
        raise ValueError(
            f"{path}: checkpoint format {found} "
            f"is not supported (expected {CHECKPOINT_FORMAT_VERSION}); retrain with this version."
        )
    return state


def read_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load ``path`` as a :class:`Checkpoint` (see :func:`load_checkpoint`).

    Raises:
        FileNotFoundError: no such checkpoint (train the fold first).
        ValueError: unreadable file, unknown format version, or a malformed plan.
    """
    return Checkpoint.from_dict(load_checkpoint(path, map_location), source=str(path))


def load_weights(net: torch.nn.Module, checkpoint: Checkpoint, path: Path) -> None:
    """Put the checkpoint's weights into ``net``, or say which checkpoint does not fit and why.

    Raises:
        ValueError: the weights do not fit the network this version builds from the
            checkpoint's plan (e.g. a checkpoint of an older network layout).
    """
    try:
        net.load_state_dict(checkpoint.weights)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1].strip()
        raise ValueError(
            f"{path}: its weights do not fit the network this version of autojoint builds "
            f"from its plan ({first}); retrain the fold with this version."
        ) from err
