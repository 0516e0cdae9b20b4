"""What one rank trains with, built before the first epoch: network, loader, augmentation,
gradient scaler and log, restored from ``checkpoint_latest.pt`` when the run resumes."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from batchgenerators.transforms.abstract_transforms import Compose

from autojoint.data.augmentation import AugmentationSpec, augmentation_spec, training_transforms
from autojoint.data.loader import JointDataLoader
from autojoint.io.files import write_json
from autojoint.networks.blocks import init_weights
from autojoint.networks.joint_net import JointNet
from autojoint.planning.schema import Plan
from autojoint.runtime.devices import training_autocast_dtype
from autojoint.training.config import TrainerConfig
from autojoint.training.distributed import DistributedContext, split_batch
from autojoint.training.schedule import Stage
from autojoint.training.state import RunState, plain_config, resume_run
from autojoint.training.step import make_grad_scaler

logger = logging.getLogger(__name__)

TRAINER_CONFIG_FILE = "trainer_config.json"
RANK_SEED_STRIDE = 100_003  # keeps the loader seeds of ranks and their workers apart


@dataclass(frozen=True)
class FoldJob:
    """One rank's part in training one fold, as launch.train_fold resolved it."""

    plan: Plan  # with --preset/--set applied
    config: TrainerConfig  # with the schedule resolved
    ctx: DistributedContext
    device: torch.device
    stages: list[Stage]
    fold: str
    train_ids: list[str]
    val_ids: list[str]
    out: Path  # the fold directory
    pre_dir: Path  # the preprocessed cases


@dataclass
class FoldSetup:
    """What the epochs train with."""

    net: JointNet
    class_weights: torch.Tensor
    spec: AugmentationSpec
    loader: JointDataLoader
    log: dict  # training_log.json: the config, the cases and one record per epoch
    run: RunState
    transforms: Compose
    scaler: torch.amp.GradScaler
    autocast_dtype: torch.dtype | None  # the forward's autocast (None: float32)


def set_up_fold(job: FoldJob) -> FoldSetup:
    """Build the run, from scratch or (``config.resume``) from ``checkpoint_latest.pt``; the
    main rank writes ``trainer_config.json``. The order of the steps is part of the run's
    random streams: keep it."""
    plan, config, ctx = job.plan, job.config, job.ctx
    net = JointNet(plan)
    init_weights(net)
    net.to(job.device)
    class_weights = torch.tensor(
        plan.class_weights or [1.0], dtype=torch.float32, device=job.device
    )
    spec = augmentation_spec(config.augmentation, plan.patch_size, plan.target_spacing)
    loader = _make_loader(job, spec)
    log: dict = {
        "fold": job.fold,
        "config": plain_config(config),
        "train_cases": job.train_ids,
        "val_cases": job.val_ids,
        "epochs": [],
    }
    if ctx.is_main:
        job.out.mkdir(parents=True, exist_ok=True)
        _write_trainer_config(job, spec)
    # Exact resumption restores the in-process loader's streams; with worker processes or
    # several ranks the seeds are offset instead (batch_seed), so a resumed run does not
    # replay batches.
    exact = config.num_workers == 0 and not ctx.is_distributed
    run = RunState()
    if config.resume:
        run = resume_run(job.out, plan, net, loader, log, job.device, exact)
    transforms = training_transforms(
        spec, plan.patch_size, plan.classification_shape if plan.has_diagnosis else None
    )
    autocast = training_autocast_dtype(job.device, config.precision)
    scaler = make_grad_scaler(job.device, autocast)
    if run.scaler_state:
        scaler.load_state_dict(run.scaler_state)
    _log_start(job)
    return FoldSetup(net, class_weights, spec, loader, log, run, transforms, scaler, autocast)


def batch_seed(job: FoldJob, start_epoch: int) -> int:
    """Seed of the augmentation workers: apart per rank, and per start epoch of a resumed
    run."""
    return _loader_seed(job) + 1000 * start_epoch


def _loader_seed(job: FoldJob) -> int:
    return job.config.seed + RANK_SEED_STRIDE * job.ctx.rank


def _make_loader(job: FoldJob, spec: AugmentationSpec) -> JointDataLoader:
    """This rank's share of each global batch of training patches."""
    plan, config, ctx = job.plan, job.config, job.ctx
    offset, local_batch = split_batch(plan.batch_size, ctx.world_size, ctx.rank)
    return JointDataLoader(
        job.pre_dir,
        job.train_ids,
        patch_size=plan.patch_size,
        batch_size=local_batch,
        classes=plan.classes,
        seed=_loader_seed(job),
        oversample_foreground=config.oversample_foreground,
        num_workers=max(config.num_workers, 1),
        loaded_patch_size=spec.loaded_patch_size,
        batch_offset=offset,
        global_batch_size=plan.batch_size,
    )


def _write_trainer_config(job: FoldJob, spec: AugmentationSpec) -> None:
    write_json(
        {
            "config": plain_config(job.config),
            "device": str(job.device),
            "world_size": job.ctx.world_size,
            "stages": [asdict(s) for s in job.stages],
            "augmentation": spec.to_dict(),
        },
        job.out / TRAINER_CONFIG_FILE,
    )


def _log_start(job: FoldJob) -> None:
    plan, config, ctx = job.plan, job.config, job.ctx
    logger.info(
        "fold %s: %d train / %d val cases, patch %s, batch %d (%d per rank x %d), device %s, "
        "%s schedule, %s, augmentation %s",
        job.fold,
        len(job.train_ids),
        len(job.val_ids),
        plan.patch_size,
        plan.batch_size,
        split_batch(plan.batch_size, ctx.world_size, ctx.rank)[1],
        ctx.world_size,
        job.device,
        config.schedule,
        config.optimizer,
        config.augmentation,
    )
