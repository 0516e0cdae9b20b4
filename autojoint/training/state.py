"""The state of a training run that checkpoints carry, and resuming from it.

``checkpoint_latest.pt`` (every ``checkpoint_every`` epochs and after the last) holds what
``--continue`` needs to go on exactly: weights, optimiser, gradient scaler, stage, EMA and
every random stream. ``checkpoint_best.pt`` and ``checkpoint_final.pt`` hold weights only.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from autojoint.data.augmentation import AugmentationSpec
from autojoint.data.loader import JointDataLoader
from autojoint.io.files import read_json
from autojoint.networks.joint_net import JointNet
from autojoint.planning.schema import Plan
from autojoint.runtime.checkpoint import (
    BEST_CHECKPOINT,
    FINAL_CHECKPOINT,
    LATEST_CHECKPOINT,
    TrainingRecord,
    load_weights,
    read_checkpoint,
    save_checkpoint,
)
from autojoint.training.config import TrainerConfig
from autojoint.training.progress import update_ema
from autojoint.training.rng_state import capture_rng_state, restore_rng_state

logger = logging.getLogger(__name__)

TRAINING_LOG_FILE = "training_log.json"


@dataclass
class RunState:
    """The mutable state of a training run that a checkpoint must restore."""

    start_epoch: int = 0
    stage_index: int = -1  # stage whose optimiser state was restored (-1: none)
    optimizer_state: dict | None = None
    scaler_state: dict | None = None
    ema: float | None = None
    best_ema: float | None = None

    def add_score(self, score: float | None) -> bool:
        """Fold an epoch's validation score into the EMA; True when the EMA is the best yet
        (the epoch's weights become ``checkpoint_best.pt``)."""
        self.ema = update_ema(self.ema, score)
        is_best = self.ema is not None and (self.best_ema is None or self.ema > self.best_ema)
        if is_best:
            self.best_ema = self.ema
        return is_best


def plain_config(config: TrainerConfig) -> dict:
    """``config`` as JSON- and ``weights_only``-safe values (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}


def checkpoint_extra(
    fold: str,
    config: TrainerConfig,
    spec: AugmentationSpec,
    stage_index: int,
    scaler: torch.amp.GradScaler,
    run: RunState,
    loader: JointDataLoader | None,
) -> TrainingRecord:
    """Everything besides weights and optimiser that a checkpoint stores (plain values and
    tensors only, so ``torch.load(weights_only=True)`` reads it)."""
    return TrainingRecord(
        fold=fold,
        trainer=plain_config(config),
        augmentation=spec.to_dict(),
        stage=stage_index,
        grad_scaler=scaler.state_dict(),
        ema=run.ema,
        best_ema=run.best_ema,
        rng=capture_rng_state(loader) if loader is not None else None,
    )


def save_epoch_checkpoints(
    out: Path,
    *,
    net: JointNet,
    optimizer: torch.optim.Optimizer,
    plan: Plan,
    epoch: int,
    extra: TrainingRecord,
    is_latest: bool,
    is_best: bool,
) -> None:
    """``checkpoint_latest.pt`` (with the optimiser) and/or ``checkpoint_best.pt`` after
    ``epoch`` (1-based) epochs."""
    wanted = ((LATEST_CHECKPOINT, is_latest, optimizer), (BEST_CHECKPOINT, is_best, None))
    for name, keep, state in wanted:
        if keep:
            save_checkpoint(
                out / name, net=net, optimizer=state, plan=plan, epoch=epoch, extra=extra
            )


def save_final_checkpoint(
    out: Path, net: JointNet, plan: Plan, fold: str, config: TrainerConfig, spec: AugmentationSpec
) -> None:
    """``checkpoint_final.pt``: the weights after the last epoch, what autojoint_predict
    loads by default."""
    save_checkpoint(
        out / FINAL_CHECKPOINT,
        net=net,
        optimizer=None,
        plan=plan,
        epoch=config.epochs,
        extra=TrainingRecord(fold=fold, trainer=plain_config(config), augmentation=spec.to_dict()),
    )


def resume_run(
    out: Path,
    plan: Plan,
    net: JointNet,
    loader: JointDataLoader,
    log: dict,
    device: torch.device,
    exact_rng: bool,
) -> RunState:
    """Restore weights, random streams and log from ``checkpoint_latest.pt``; return the
    epoch to continue from and the optimiser/scaler state to load once the stage's optimiser
    is built (start epoch 0 = nothing to resume).

    Raises:
        ValueError: the checkpoint was trained with another plan, or by a trainer too old
            to resume exactly.
    """
    path = out / LATEST_CHECKPOINT
    if not path.is_file():
        logger.warning("--continue: %s not found; starting from scratch", path)
        return RunState()
    ckpt = read_checkpoint(path, device)
    if ckpt.plan != plan:
        raise ValueError(
            f"{path}: was trained with a different plan or --set options; resume with the "
            "same options, or train into a fresh fold directory."
        )
    record = ckpt.training
    if record.stage is None:
        raise ValueError(
            f"{path}: written by an older trainer that cannot be resumed exactly; train "
            "this fold again into a fresh fold directory."
        )
    load_weights(net, ckpt, path)
    if exact_rng and record.rng is not None:
        restore_rng_state(record.rng, loader)
    log_path = out / TRAINING_LOG_FILE
    if log_path.is_file():
        log["epochs"] = read_json(log_path)["epochs"][: ckpt.epoch]
    logger.info("resuming fold from epoch %d (%s)", ckpt.epoch, path)
    return RunState(
        start_epoch=ckpt.epoch,
        stage_index=record.stage,
        optimizer_state=ckpt.optimizer,
        scaler_state=record.grad_scaler,
        ema=record.ema,
        best_ema=record.best_ema,
    )
