"""Train the joint network on one cross-validation fold: the epoch loop.

Lean by design: data, augmentation, loss and optimiser come from small factories; variants
are ``TrainerConfig`` values, not subclasses. Beside it: launch.py resolves the plan and
starts the processes, state.py checkpoints and resumes the run, epoch_validation.py scores
each epoch, validation.py scores the full cases at the end.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from autojoint.data.augmentation import batch_iterator
from autojoint.data.batch import Batch
from autojoint.io.files import write_json
from autojoint.planning.schema import LossWeights
from autojoint.training.distributed import all_reduce_mean, barrier
from autojoint.training.epoch_validation import validate_views
from autojoint.training.fold_setup import FoldJob, FoldSetup, batch_seed, set_up_fold
from autojoint.training.progress import epoch_score, format_epoch, plot_progress
from autojoint.training.schedule import (
    Stage,
    learning_rate,
    make_optimizer,
    ramped_loss_weights,
    set_trainable,
    stage_loss_weights,
    stage_of,
    stage_parameters,
    task_aware_ramp,
)
from autojoint.training.state import (
    TRAINING_LOG_FILE,
    checkpoint_extra,
    save_epoch_checkpoints,
    save_final_checkpoint,
)
from autojoint.training.step import LOSS_TERMS, batch_to_device, train_step, validation_loss
from autojoint.training.validation import validate_cases, write_validation

logger = logging.getLogger(__name__)

PROGRESS_FILE = "progress.png"


@dataclass(frozen=True)
class _StageOptimizer:
    """The current stage's trainable parameters, their optimiser, and what runs forward."""

    index: int
    stage: Stage
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    model: torch.nn.Module  # the network, or its DDP wrapper


def train(job: FoldJob) -> Path:
    """Train ``job``'s fold (from ``checkpoint_latest.pt`` with ``config.resume``); writes
    the checkpoints, logs and (main rank, folds 0-4) the final validation. Returns the fold
    directory."""
    setup = set_up_fold(job)
    seed = batch_seed(job, setup.run.start_epoch)
    with batch_iterator(setup.loader, job.config.num_workers, seed, setup.transforms) as batches:
        _train_epochs(job, setup, batches)
    set_trainable(setup.net, setup.net.parameters())
    if job.ctx.is_main:
        save_final_checkpoint(job.out, setup.net, job.plan, job.fold, job.config, setup.spec)
        if job.val_ids and job.config.final_validation:
            mirror = setup.spec.mirror_axes if job.config.use_validation_tta else ()
            keep = job.out if job.config.save_validation_probabilities else None
            cases = validate_cases(
                setup.net,
                job.plan,
                job.pre_dir,
                job.val_ids,
                job.device,
                mirror_axes=mirror,
                probabilities_to=keep,
            )
            write_validation(cases, job.out)
    barrier(job.ctx)
    return job.out


def _train_epochs(job: FoldJob, setup: FoldSetup, batches: Iterator[Batch]) -> None:
    """From the run's start epoch to the last, a new optimiser at each stage."""
    config = job.config
    diagnosis_losses = [float(e.get("loss_cls", math.nan)) for e in setup.log["epochs"]]
    current: _StageOptimizer | None = None
    for epoch in range(setup.run.start_epoch, config.epochs):
        index = stage_of(job.stages, epoch)
        if current is None or current.index != index:
            current = _enter_stage(job, setup, index, epoch)
        lr = _set_learning_rate(current, epoch, config.lr)
        weights, ta_factor = _loss_weights(job, current.stage, diagnosis_losses)
        t0 = time.perf_counter()
        means = _train_epoch(job, setup, current, batches, weights, epoch)
        diagnosis_losses.append(means["loss_cls"])
        record: dict = {
            "epoch": epoch + 1,
            "stage": current.stage.name,
            **means,
            "lr": lr,
            "task_aware_factor": ta_factor,
        }
        if job.ctx.is_main:
            _end_epoch(job, setup, current, weights, record, t0)


def _enter_stage(job: FoldJob, setup: FoldSetup, index: int, epoch: int) -> _StageOptimizer:
    """Train only stage ``index``'s parameters, with a fresh optimiser (or the checkpoint's,
    when the run resumes inside this stage)."""
    stage = job.stages[index]
    net, config, run = setup.net, job.config, setup.run
    params = stage_parameters(net, stage)
    set_trainable(net, params)
    optimizer = make_optimizer(config.optimizer, params, config.lr, config.weight_decay)
    if index == run.stage_index and run.optimizer_state is not None:
        optimizer.load_state_dict(run.optimizer_state)
    model: torch.nn.Module = net
    if job.ctx.is_distributed:
        device_ids = [job.device] if job.device.type == "cuda" else None
        model = torch.nn.parallel.DistributedDataParallel(net, device_ids=device_ids)
    logger.info("stage %s from epoch %d", stage.name, epoch + 1)
    return _StageOptimizer(index, stage, params, optimizer, model)


def _set_learning_rate(current: _StageOptimizer, epoch: int, base_lr: float) -> float:
    lr = learning_rate(current.stage, epoch, base_lr)
    for group in current.optimizer.param_groups:
        group["lr"] = lr
    return lr


def _loss_weights(
    job: FoldJob, stage: Stage, diagnosis_losses: list[float]
) -> tuple[LossWeights, float]:
    """The stage's loss weights with the task-aware term ramped in; the ramp factor.

    Every rank reads the same all-reduced history, so the ramp agrees across ranks.
    """
    config = job.config
    ta_factor = task_aware_ramp(
        diagnosis_losses, len(job.plan.classes), config.epochs, config.task_aware_warmup
    )
    weights = ramped_loss_weights(stage_loss_weights(job.plan.loss_weights, stage), ta_factor)
    return weights, ta_factor


def _train_epoch(
    job: FoldJob,
    setup: FoldSetup,
    current: _StageOptimizer,
    batches: Iterator[Batch],
    weights: LossWeights,
    epoch: int,
) -> dict[str, float]:
    """``iterations_per_epoch`` steps; the mean loss terms (``loss_*``) over steps and ranks."""
    config, plan = job.config, job.plan
    sums = dict.fromkeys(LOSS_TERMS, 0.0)
    bar = tqdm(
        range(config.iterations_per_epoch),
        desc=f"epoch {epoch + 1}/{config.epochs}",
        unit="it",
        leave=False,
        disable=not job.ctx.is_main,
    )
    for _ in bar:
        parts = train_step(
            current.model,
            setup.net,
            batch_to_device(next(batches), job.device),
            current.optimizer,
            setup.scaler,
            weights=weights,
            class_weights=setup.class_weights,
            loss_options=plan.loss,
            use_view=plan.has_diagnosis,
            grad_clip=config.grad_clip,
            params=current.params,
            autocast_dtype=setup.autocast_dtype,
        )
        for k in sums:
            sums[k] += float(getattr(parts, k).detach())
        bar.set_postfix(loss=f"{float(parts.total.detach()):.3f}")
    n = config.iterations_per_epoch
    return all_reduce_mean({f"loss_{k}": v / n for k, v in sums.items()}, job.ctx)


def _end_epoch(
    job: FoldJob,
    setup: FoldSetup,
    current: _StageOptimizer,
    weights: LossWeights,
    record: dict,
    t0: float,
) -> None:
    """Main rank: validate the epoch, log it, write the log, the checkpoints it is due and
    ``progress.png``."""
    config, run = job.config, setup.run
    # validation loss terms (val_loss_*), then the view scores; nothing without val cases
    record.update(
        validation_loss(
            setup.net,
            job.plan,
            job.pre_dir,
            job.val_ids,
            weights=weights,
            class_weights=setup.class_weights,
            num_batches=config.val_iterations,
            seed=config.seed,
            device=job.device,
        )
    )
    record.update(validate_views(setup.net, job.plan, job.pre_dir, job.val_ids, job.device))
    is_best = run.add_score(epoch_score(record))
    if run.ema is not None:
        record["val_ema"] = run.ema
    record["seconds"] = time.perf_counter() - t0
    setup.log["epochs"].append(record)
    logger.info(format_epoch(record, config.epochs))
    epoch = record["epoch"]
    # The log first: resuming keeps the log's first ``checkpoint epoch`` records, so a kill
    # between the two writes re-runs the epoch instead of losing its record for good.
    write_json(setup.log, job.out / TRAINING_LOG_FILE)
    extra = checkpoint_extra(
        job.fold, config, setup.spec, current.index, setup.scaler, run, setup.loader
    )
    save_epoch_checkpoints(
        job.out,
        net=setup.net,
        optimizer=current.optimizer,
        plan=job.plan,
        epoch=epoch,
        extra=extra,
        is_latest=epoch % config.checkpoint_every == 0 or epoch == config.epochs,
        is_best=is_best,
    )
    plot_progress(setup.log["epochs"], job.out / PROGRESS_FILE)
