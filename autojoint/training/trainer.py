"""Train the joint network on one cross-validation fold.

Lean by design: data, augmentation, loss and optimiser come from small factories; variants
are ``TrainerConfig`` values, not subclasses.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from autojoint.data.augmentation import (
    AugmentationSpec,
    augmentation_spec,
    make_batch_iterator,
    training_transforms,
)
from autojoint.data.loader import JointDataLoader
from autojoint.io.files import read_json, remove_stale_temp_files, write_json
from autojoint.io.workdir import PLANS_FILE, SPLITS_FILE, fold_dir, preprocessed_dir
from autojoint.losses.registry import get_segmentation_loss
from autojoint.networks.blocks import init_weights
from autojoint.networks.fusion import fused_logits
from autojoint.networks.joint_net import JointNet
from autojoint.planning.overrides import apply_overrides
from autojoint.planning.resolution import estimate_memory_gb
from autojoint.planning.schema import Plan
from autojoint.preprocessing.preprocess import list_preprocessed, load_preprocessed
from autojoint.runtime.checkpoint import (
    BEST_CHECKPOINT,
    FINAL_CHECKPOINT,
    LATEST_CHECKPOINT,
    TrainingRecord,
    load_weights,
    read_checkpoint,
    save_checkpoint,
)
from autojoint.runtime.devices import resolve_device
from autojoint.training.config import TrainerConfig, resolve_schedule
from autojoint.training.distributed import (
    DistributedContext,
    all_reduce_mean,
    barrier,
    destroy_process_group,
    free_port,
    init_process_group,
    split_batch,
)
from autojoint.training.progress import epoch_score, format_epoch, plot_progress, update_ema
from autojoint.training.rng_state import capture_rng_state, restore_rng_state
from autojoint.training.schedule import (
    Stage,
    learning_rate,
    make_optimizer,
    plan_stages,
    ramped_loss_weights,
    set_trainable,
    stage_loss_weights,
    stage_of,
    stage_parameters,
    task_aware_ramp,
)
from autojoint.training.splits import NUM_FOLDS, load_or_create_splits
from autojoint.training.step import (
    LOSS_TERMS,
    batch_to_device,
    make_grad_scaler,
    train_step,
    validation_loss,
)
from autojoint.training.validation import validate_cases, write_validation

__all__ = ["TrainerConfig", "fold_cases", "resolve_device", "train_fold", "validate"]

logger = logging.getLogger(__name__)

TRAINER_CONFIG_FILE = "trainer_config.json"
PROGRESS_FILE = "progress.png"
RANK_SEED_STRIDE = 100_003  # keeps the loader seeds of ranks and their workers apart


def fold_cases(
    work_dir: Path, fold: str, configuration: str = "fullres"
) -> tuple[list[str], list[str]]:
    """Train and validation case ids of ``fold`` ('0'..'4' or 'all')."""
    pre = preprocessed_dir(work_dir, configuration)
    ids = list_preprocessed(pre)
    if not ids:
        raise FileNotFoundError(f"{pre}: no preprocessed cases; run autojoint_plan first.")
    if fold == "all":
        return ids, []
    if not fold.isdigit() or not 0 <= int(fold) < NUM_FOLDS:
        raise ValueError(f"fold must be 0..{NUM_FOLDS - 1} or 'all', got '{fold}'.")
    diagnoses = [read_json(pre / f"{c}.json")["diagnosis"] for c in ids]
    split = load_or_create_splits(Path(work_dir) / SPLITS_FILE, ids, diagnoses)[int(fold)]
    return split["train"], split["val"]


def _to_device(batch: dict, device: torch.device) -> dict[str, torch.Tensor]:
    return {
        "data": torch.from_numpy(batch["data"]).to(device),
        "seg": torch.from_numpy(batch["seg"][:, 0].astype(np.int64)).to(device),
        "cls_data": torch.from_numpy(batch["cls_data"]).to(device),
        "cls_seg": torch.from_numpy(batch["cls_seg"].astype(np.int64)).to(device),
        "diagnosis": torch.from_numpy(batch["diagnosis"]).to(device),
        "has_mask": torch.from_numpy(batch["has_mask"]).to(device),
    }


@torch.no_grad()
def validate(
    net: JointNet, plan: Plan, pre_dir: Path, case_ids: list[str], device: torch.device
) -> dict[str, float]:
    """Cheap per-epoch check on the whole-scan views: diagnosis accuracy and lesion Dice
    (union of lesion labels, pooled over cases). Full-resolution scores come from
    autojoint_predict + autojoint_evaluate."""
    if not case_ids:
        return {}
    net.eval()
    correct = counted = 0
    inter = denom = 0.0
    for c in case_ids:
        if net.cls is None:
            continue
        case = load_preprocessed(pre_dir, c, mmap_mode="r")  # only the views are read
        view = torch.from_numpy(np.array(case.cls_data[None], np.float32)).to(device)
        ref = np.asarray(case.cls_seg) if case.cls_seg is not None else None
        diag = case.diagnosis
        scales, logits, _ = net.classify(view)
        if diag in plan.classes:
            counted += 1
            correct += int(plan.classes[int(logits.argmax())] == diag)
        if ref is not None:
            fused = fused_logits(scales, net.view_eta, net.options.fusion)
            pred = fused.argmax(1)[0].cpu().numpy() > 0
            inter += float(np.logical_and(pred, ref > 0).sum())
            denom += float(pred.sum() + (ref > 0).sum())
    net.train()
    out: dict[str, float] = {}
    if counted:
        out["val_accuracy"] = correct / counted
    if denom:
        out["val_view_dice"] = 2 * inter / denom
    return out


def _checkpoint_extra(
    fold: str,
    config: TrainerConfig,
    spec: AugmentationSpec,
    stage_index: int,
    scaler: torch.amp.GradScaler,
    ema: float | None,
    best_ema: float | None,
    loader: JointDataLoader | None,
) -> TrainingRecord:
    """Everything besides weights and optimiser that a checkpoint stores (plain values and
    tensors only, so ``torch.load(weights_only=True)`` reads it)."""
    return TrainingRecord(
        fold=fold,
        trainer=_plain(asdict(config)),
        augmentation=spec.to_dict(),
        stage=stage_index,
        grad_scaler=scaler.state_dict(),
        ema=ema,
        best_ema=best_ema,
        rng=capture_rng_state(loader) if loader is not None else None,
    )


def _plain(d: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


@dataclass
class _Run:
    """The mutable state of a training run that a checkpoint must restore."""

    start_epoch: int = 0
    stage_index: int = -1  # stage whose optimiser state was restored (-1: none)
    optimizer_state: dict | None = None
    scaler_state: dict | None = None
    ema: float | None = None
    best_ema: float | None = None


def _resume(
    out: Path,
    plan: Plan,
    net: JointNet,
    loader: JointDataLoader,
    log: dict,
    device: torch.device,
    exact_rng: bool,
) -> _Run:
    """Restore weights, random streams and log from ``checkpoint_latest.pt``; return the
    epoch to continue from and the optimiser/scaler state to load once the stage's optimiser
    is built (start epoch 0 = nothing to resume)."""
    path = out / LATEST_CHECKPOINT
    if not path.is_file():
        logger.warning("--continue: %s not found; starting from scratch", path)
        return _Run()
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
    log_path = out / "training_log.json"
    if log_path.is_file():
        log["epochs"] = read_json(log_path)["epochs"][: ckpt.epoch]
    logger.info("resuming fold from epoch %d (%s)", ckpt.epoch, path)
    return _Run(
        start_epoch=ckpt.epoch,
        stage_index=record.stage,
        optimizer_state=ckpt.optimizer,
        scaler_state=record.grad_scaler,
        ema=record.ema,
        best_ema=record.best_ema,
    )


def _spawned_worker(rank: int, work_dir: Path, fold: str, config: TrainerConfig, port: int) -> None:
    if not logging.getLogger().handlers:  # a fresh interpreter: show rank 0's log lines
        logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING)
    ctx = DistributedContext(rank, config.num_gpus, rank, f"tcp://127.0.0.1:{port}")
    train_fold(work_dir, fold, config, ctx)


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
    return fold_dir(work_dir, fold, config.configuration)


def _rank_device(config: TrainerConfig, ctx: DistributedContext) -> torch.device:
    device = resolve_device(config.device)
    if ctx.is_distributed and device.type == "cuda":
        return torch.device("cuda", ctx.local_rank)
    return device


def warn_if_switches_exceed_budget(stored: Plan, plan: Plan) -> float | None:
    """Train-time ``--set``/``--preset`` network switches keep the planned patch and batch;
    when they push the memory estimate past the plan's budget, say so and how to re-plan.

    Returns:
        the estimate (GB) with the new switches when it exceeds the budget, else None.
    """
    if plan.network == stored.network:
        return None
    estimate = estimate_memory_gb(
        plan.patch_size,
        plan.topology,
        plan.batch_size,
        classification_shape=plan.classification_shape if plan.has_diagnosis else None,
        network=plan.network,
        in_channels=len(plan.channel_names),
    )
    if estimate <= plan.memory_budget_gb:
        return None
    logger.warning(
        "the network switches of this run raise the planned memory estimate from %.2f to "
        "%.2f GB, above the plan's budget of %.2f GB (patch %s, batch %d were fitted without "
        "them); training may run out of memory. To fit patch and batch to these switches, "
        "plan with them: autojoint_plan -d RAW -w WORK --preset NAME / --set ITEM.",
        stored.estimated_memory_gb,
        estimate,
        plan.memory_budget_gb,
        plan.patch_size,
        plan.batch_size,
    )
    return estimate


def train_fold(
    work_dir: Path, fold: str, config: TrainerConfig, ctx: DistributedContext | None = None
) -> Path:
    """Train one fold; writes ``fold_FOLD/checkpoint_{latest,best,final}.pt``,
    ``training_log.json``, ``trainer_config.json``, ``progress.png`` and (folds 0-4)
    ``validation/summary.json``. Returns the fold directory.

    Args:
        ctx: this process's place in a distributed run (torchrun, or a process spawned
            for ``config.num_gpus > 1``); None for a single process, or to spawn.
    """
    if ctx is None and config.num_gpus > 1:
        return _spawn(work_dir, fold, config)
    ctx = ctx or DistributedContext()
    work_dir = Path(work_dir)
    stored = Plan.load(work_dir / PLANS_FILE).for_configuration(config.configuration)
    plan = apply_overrides(stored, config.plan_overrides)
    if ctx.is_main:
        warn_if_switches_exceed_budget(stored, plan)
    # Schedule "plan" becomes the plan's (with --preset/--set applied), so everything stored
    # below (trainer_config.json, log, checkpoints) names the schedule actually trained.
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
    # Same initial weights on every rank (DDP also broadcasts rank 0's); batchgenerators'
    # transforms draw from numpy's and Python's global generators: seed both, per rank, so
    # a run is repeatable for a seed (our own sampling uses explicit Generators).
    torch.manual_seed(config.seed)
    np.random.seed(config.seed + ctx.rank)
    random.seed(config.seed + ctx.rank)
    train_ids, val_ids = fold_cases(work_dir, fold, config.configuration)
    out = fold_dir(work_dir, fold, config.configuration)
    pre_dir = preprocessed_dir(work_dir, config.configuration)
    if ctx.rank == 0:  # leftovers of a killed run's atomic writes (checkpoints, PNG, logs)
        remove_stale_temp_files(out)
    init_process_group(ctx, device)
    try:
        return _train(plan, config, ctx, device, stages, fold, train_ids, val_ids, out, pre_dir)
    finally:
        destroy_process_group(ctx)


def _train(
    plan: Plan,
    config: TrainerConfig,
    ctx: DistributedContext,
    device: torch.device,
    stages: list[Stage],
    fold: str,
    train_ids: list[str],
    val_ids: list[str],
    out: Path,
    pre_dir: Path,
) -> Path:
    net = JointNet(plan)
    init_weights(net)
    net.to(device)
    class_weights = torch.tensor(plan.class_weights or [1.0], dtype=torch.float32, device=device)
    spec = augmentation_spec(config.augmentation, plan.patch_size, plan.target_spacing)
    offset, local_batch = split_batch(plan.batch_size, ctx.world_size, ctx.rank)
    loader = JointDataLoader(
        pre_dir,
        train_ids,
        patch_size=plan.patch_size,
        batch_size=local_batch,
        classes=plan.classes,
        seed=config.seed + RANK_SEED_STRIDE * ctx.rank,
        oversample_foreground=config.oversample_foreground,
        num_workers=max(config.num_workers, 1),
        loaded_patch_size=spec.loaded_patch_size,
        batch_offset=offset,
        global_batch_size=plan.batch_size,
    )
    log: dict = {
        "fold": fold,
        "config": _plain(asdict(config)),
        "train_cases": train_ids,
        "val_cases": val_ids,
        "epochs": [],
    }
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        write_json(
            {
                "config": _plain(asdict(config)),
                "device": str(device),
                "world_size": ctx.world_size,
                "stages": [asdict(s) for s in stages],
                "augmentation": spec.to_dict(),
            },
            out / TRAINER_CONFIG_FILE,
        )
    # Exact resumption restores the in-process loader's streams; with worker processes or
    # several ranks the seeds are offset instead, so a resumed run does not replay batches.
    exact = config.num_workers == 0 and not ctx.is_distributed
    run = _resume(out, plan, net, loader, log, device, exact) if config.resume else _Run()
    transforms = training_transforms(
        spec, plan.patch_size, plan.classification_shape if plan.has_diagnosis else None
    )
    batches = make_batch_iterator(
        loader,
        config.num_workers,
        config.seed + RANK_SEED_STRIDE * ctx.rank + 1000 * run.start_epoch,
        transforms,
    )
    scaler = make_grad_scaler(device)
    if run.scaler_state:
        scaler.load_state_dict(run.scaler_state)
    logger.info(
        "fold %s: %d train / %d val cases, patch %s, batch %d (%d per rank x %d), device %s, "
        "%s schedule, %s, augmentation %s",
        fold,
        len(train_ids),
        len(val_ids),
        plan.patch_size,
        plan.batch_size,
        local_batch,
        ctx.world_size,
        device,
        config.schedule,
        config.optimizer,
        config.augmentation,
    )
    stage_index = -1
    diagnosis_losses = [float(e.get("loss_cls", math.nan)) for e in log["epochs"]]
    optimizer: torch.optim.Optimizer | None = None
    model: torch.nn.Module = net
    params: list[torch.nn.Parameter] = []
    try:
        for epoch in range(run.start_epoch, config.epochs):
            si = stage_of(stages, epoch)
            stage = stages[si]
            if si != stage_index:
                params = stage_parameters(net, stage)
                set_trainable(net, params)
                optimizer = make_optimizer(config.optimizer, params, config.lr, config.weight_decay)
                if si == run.stage_index and run.optimizer_state is not None:
                    optimizer.load_state_dict(run.optimizer_state)
                model = (
                    torch.nn.parallel.DistributedDataParallel(
                        net, device_ids=[device] if device.type == "cuda" else None
                    )
                    if ctx.is_distributed
                    else net
                )
                stage_index = si
                logger.info("stage %s from epoch %d", stage.name, epoch + 1)
            assert optimizer is not None
            lr = learning_rate(stage, epoch, config.lr)
            for group in optimizer.param_groups:
                group["lr"] = lr
            # Every rank reads the same all-reduced history, so the ramp agrees across ranks.
            ta_factor = task_aware_ramp(
                diagnosis_losses, len(plan.classes), config.epochs, config.task_aware_warmup
            )
            weights = ramped_loss_weights(stage_loss_weights(plan.loss_weights, stage), ta_factor)
            t0 = time.perf_counter()
            sums = dict.fromkeys(LOSS_TERMS, 0.0)
            bar = tqdm(
                range(config.iterations_per_epoch),
                desc=f"epoch {epoch + 1}/{config.epochs}",
                unit="it",
                leave=False,
                disable=not ctx.is_main,
            )
            for _ in bar:
                batch = batch_to_device(next(batches), device)
                parts = train_step(
                    model,
                    net,
                    batch,
                    optimizer,
                    scaler,
                    weights=weights,
                    class_weights=class_weights,
                    loss_options=plan.loss,
                    use_view=plan.has_diagnosis,
                    grad_clip=config.grad_clip,
                    params=params,
                )
                for k in sums:
                    sums[k] += float(getattr(parts, k).detach())
                bar.set_postfix(loss=f"{float(parts.total.detach()):.3f}")
            n = max(config.iterations_per_epoch, 1)
            means = all_reduce_mean({f"loss_{k}": v / n for k, v in sums.items()}, ctx)
            diagnosis_losses.append(means["loss_cls"])
            record: dict = {
                "epoch": epoch + 1,
                "stage": stage.name,
                **means,
                "lr": lr,
                "task_aware_factor": ta_factor,
            }
            if ctx.is_main:
                record.update(
                    validation_loss(
                        net,
                        plan,
                        pre_dir,
                        val_ids,
                        weights=weights,
                        class_weights=class_weights,
                        num_batches=config.val_iterations,
                        seed=config.seed,
                        device=device,
                    )
                )
                record.update(validate(net, plan, pre_dir, val_ids, device))
                run.ema = update_ema(run.ema, epoch_score(record))
                if run.ema is not None:
                    record["val_ema"] = run.ema
                record["seconds"] = time.perf_counter() - t0
                log["epochs"].append(record)
                logger.info(format_epoch(record, config.epochs))
                is_best = run.ema is not None and (run.best_ema is None or run.ema > run.best_ema)
                if is_best:
                    run.best_ema = run.ema
                extra = _checkpoint_extra(
                    fold, config, spec, si, scaler, run.ema, run.best_ema, loader
                )
                if (epoch + 1) % config.checkpoint_every == 0 or epoch + 1 == config.epochs:
                    save_checkpoint(
                        out / LATEST_CHECKPOINT,
                        net=net,
                        optimizer=optimizer,
                        plan=plan,
                        epoch=epoch + 1,
                        extra=extra,
                    )
                if is_best:
                    save_checkpoint(
                        out / BEST_CHECKPOINT,
                        net=net,
                        optimizer=None,
                        plan=plan,
                        epoch=epoch + 1,
                        extra=extra,
                    )
                write_json(log, out / "training_log.json")
                plot_progress(log["epochs"], out / PROGRESS_FILE)
    finally:
        if hasattr(batches, "_finish"):
            batches._finish()
    set_trainable(net, net.parameters())
    if ctx.is_main:
        save_checkpoint(
            out / FINAL_CHECKPOINT,
            net=net,
            optimizer=None,
            plan=plan,
            epoch=config.epochs,
            extra=TrainingRecord(
                fold=fold, trainer=_plain(asdict(config)), augmentation=spec.to_dict()
            ),
        )
        if val_ids and config.final_validation:
            mirror = spec.mirror_axes if config.use_validation_tta else ()
            write_validation(
                validate_cases(net, plan, pre_dir, val_ids, device, mirror_axes=mirror), out
            )
    barrier(ctx)
    return out
