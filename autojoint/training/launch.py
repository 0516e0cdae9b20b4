"""Start training one fold: resolve what to train, then run it in this process, as one rank
under ``torchrun``, or in one spawned process per device (``--num-gpus N``)."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import torch

from autojoint.io.files import remove_stale_temp_files
from autojoint.io.workdir import DEFAULT_VARIANT, fold_dir, preprocessed_dir
from autojoint.losses.registry import get_segmentation_loss
from autojoint.planning.overrides import apply_overrides
from autojoint.planning.schema import Plan
from autojoint.runtime.devices import resolve_device, start_worker_threads_flushed
from autojoint.training.budget import warn_if_switches_exceed_budget
from autojoint.training.config import TrainerConfig, resolve_schedule
from autojoint.training.distributed import (
    DistributedContext,
    destroy_process_group,
    free_port,
    init_process_group,
)
from autojoint.training.fold_setup import FoldJob
from autojoint.training.schedule import plan_stages
from autojoint.training.splits import fold_cases
from autojoint.training.trainer import train
from autojoint.training.variants import check_variant_plan, name_variant, record_variant

logger = logging.getLogger(__name__)


def train_fold(
    work_dir: Path, fold: str, config: TrainerConfig, ctx: DistributedContext | None = None
) -> Path:
    """Train one fold into its variant's folder (``fold_FOLD`` of
    ``io.workdir.variant_dir``); writes ``fold_FOLD/checkpoint_{latest,best,final}.pt``,
    ``training_log.json``, ``trainer_config.json``, ``progress.png``, (folds 0-4)
    ``validation/summary.json`` and the variant's record in ``WORK/variants.json``.
    Returns the fold directory.

    Args:
        ctx: this process's place in a distributed run (torchrun, or a process spawned
            for ``config.num_gpus > 1``); None for a single process, or to spawn.

    Raises:
        ValueError: among others, the variant's folder holds folds of a different plan.
    """
    start_worker_threads_flushed()  # before a resumed checkpoint's loading starts them
    config = name_variant(Path(work_dir), config)
    if ctx is None and config.num_gpus > 1:
        return _spawn(work_dir, fold, config)
    ctx = ctx or DistributedContext()
    job = _resolve_job(Path(work_dir), fold, config, ctx)
    if ctx.rank == 0:  # leftovers of a killed run's atomic writes (checkpoints, PNG, logs)
        remove_stale_temp_files(job.out)
        record_variant(work_dir, job.config)
        logger.info("variant %s: fold %s into %s", job.config.variant, fold, job.out)
    init_process_group(ctx, job.device)
    try:
        out = train(job)
    finally:
        destroy_process_group(ctx)
    if ctx.rank == 0:
        record_variant(work_dir, job.config)  # the fold is trained: list it
    return out


def _resolve_job(
    work_dir: Path, fold: str, config: TrainerConfig, ctx: DistributedContext
) -> FoldJob:
    """The plan with the run's ``--preset``/``--set``, the variant's fold folder, the
    schedule, device and cases; seeds the global generators.

    Raises:
        ValueError: a bad override or fold, a variant folder holding folds of another
            plan, or a two-stage schedule on a plan without diagnosis classes.
    """
    assert config.variant is not None, "train_fold names the variant first"
    stored = Plan.load_configuration(work_dir, config.configuration)
    plan = apply_overrides(stored, config.plan_overrides)
    out = fold_dir(work_dir, fold, config.configuration, config.variant)
    check_variant_plan(out.parent, config.variant, plan)  # every rank: all stop alike
    if ctx.is_main:
        warn_if_switches_exceed_budget(stored, plan)
    # Schedule "plan" becomes the plan's (with --preset/--set applied), so everything stored
    # later (trainer_config.json, log, checkpoints) names the schedule actually trained.
    config = resolve_schedule(config, plan)
    device = _rank_device(config, ctx)
    get_segmentation_loss(plan.loss.segmentation, plan.loss)  # fail fast on a bad --set
    stages = plan_stages(config.schedule, config.epochs)
    if config.schedule == "two-stage" and not plan.has_diagnosis:
        raise ValueError(
            "the two-stage schedule (--schedule, or the plan's training.schedule) pre-trains "
            "the classification path, but the plan has no diagnosis classes; use --schedule "
            "joint."
        )
    _seed_global_generators(config.seed, ctx.rank)
    train_ids, val_ids = fold_cases(work_dir, fold, config.configuration)
    return FoldJob(
        plan=plan,
        config=config,
        ctx=ctx,
        device=device,
        stages=stages,
        fold=fold,
        train_ids=train_ids,
        val_ids=val_ids,
        out=out,
        pre_dir=preprocessed_dir(work_dir, config.configuration),
    )


def _seed_global_generators(seed: int, rank: int) -> None:
    """Same initial weights on every rank (DDP also broadcasts rank 0's); batchgenerators'
    transforms draw from numpy's and Python's global generators: seed both, per rank, so a
    run is repeatable for a seed (our own sampling uses explicit Generators)."""
    torch.manual_seed(seed)
    np.random.seed(seed + rank)
    random.seed(seed + rank)


def _rank_device(config: TrainerConfig, ctx: DistributedContext) -> torch.device:
    """The configured device; under DDP on CUDA, this rank's own GPU."""
    device = resolve_device(config.device)
    if ctx.is_distributed and device.type == "cuda":
        return torch.device("cuda", ctx.local_rank)
    return device


def _spawn(work_dir: Path, fold: str, config: TrainerConfig) -> Path:
    """``--num-gpus N``: one process per device (gloo processes when the device is the CPU),
    each running :func:`train_fold` as one rank."""
    device = resolve_device(config.device)
    if device.type == "cuda" and torch.cuda.device_count() < config.num_gpus:
        raise RuntimeError(
            f"--num-gpus {config.num_gpus}: torch sees {torch.cuda.device_count()} CUDA devices."
        )
    if device.type == "mps":
        raise RuntimeError("--num-gpus > 1 needs CUDA devices (or --device cpu for gloo).")
    torch.multiprocessing.spawn(
        _spawned_worker,
        args=(Path(work_dir), fold, config, free_port()),
        nprocs=config.num_gpus,
        join=True,
    )
    return fold_dir(work_dir, fold, config.configuration, config.variant or DEFAULT_VARIANT)


def _spawned_worker(rank: int, work_dir: Path, fold: str, config: TrainerConfig, port: int) -> None:
    if not logging.getLogger().handlers:  # a fresh interpreter: show rank 0's log lines
        logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING)
    ctx = DistributedContext(rank, config.num_gpus, rank, f"tcp://127.0.0.1:{port}")
    train_fold(work_dir, fold, config, ctx)
