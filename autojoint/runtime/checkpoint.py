"""Checkpoints: weights plus the plan they were trained with, written atomically."""

from __future__ import annotations

import io
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from autojoint import __version__
from autojoint.io.files import atomic_write
from autojoint.planning.schema import Plan

CHECKPOINT_FORMAT_VERSION = 1
# The files the trainer writes in each fold folder (docs/training.md).
FINAL_CHECKPOINT = "checkpoint_final.pt"  # end of training: what prediction uses by default
BEST_CHECKPOINT = "checkpoint_best.pt"  # best EMA of the per-epoch validation score
LATEST_CHECKPOINT = "checkpoint_latest.pt"  # for --continue (with optimiser state)
CHECKPOINTS = (FINAL_CHECKPOINT, BEST_CHECKPOINT, LATEST_CHECKPOINT)


def save_checkpoint(
    path: Path,
    *,
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    plan: Plan,
    epoch: int,
    extra: dict[str, Any] | None = None,
) -> None:
    """Save a checkpoint made only of tensors and plain Python values, so it loads with
    ``torch.load(weights_only=True)`` (no arbitrary code from the file)."""
    state = {
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "autojoint_version": __version__,
        "plan": asdict(plan),
        "epoch": epoch,
        "network": net.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "extra": extra or {},
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write(path, lambda fh: fh.write(buf.getvalue()), binary=True)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely and check its format.

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


def load_weights(net: torch.nn.Module, state: dict[str, Any], path: Path) -> None:
    """Put ``state["network"]`` into ``net``, or say which checkpoint does not fit and why.

    Raises:
        ValueError: the weights do not fit the network this version builds from the
            checkpoint's plan (e.g. a checkpoint of an older network layout).
    """
    try:
        net.load_state_dict(state["network"])
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1].strip()
        raise ValueError(
            f"{path}: its weights do not fit the network this version of autojoint builds "
            f"from its plan ({first}); retrain the fold with this version."
        ) from err
