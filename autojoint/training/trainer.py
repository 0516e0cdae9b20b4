"""Train the joint network on one cross-validation fold.

Lean by design: data, augmentation, loss and optimiser come from small factories; variants
are ``TrainerConfig`` values, not subclasses.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from autojoint.data.augmentation import make_batch_iterator
from autojoint.data.loader import JointDataLoader
from autojoint.io.files import read_json, write_json
from autojoint.losses.joint import joint_loss
from autojoint.losses.registry import get_segmentation_loss
from autojoint.networks.blocks import init_weights
from autojoint.networks.joint_net import JointNet, fuse_scales
from autojoint.planning.overrides import apply_overrides
from autojoint.planning.schema import Plan
from autojoint.training.checkpoint import load_checkpoint, save_checkpoint
from autojoint.training.rng_state import capture_rng_state, restore_rng_state
from autojoint.training.splits import NUM_FOLDS, load_or_create_splits
from autojoint.training.validation import validate_cases, write_validation
from autojoint.workdir import PLANS_FILE, SPLITS_FILE, fold_dir, preprocessed_dir

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainerConfig:
    """How to train (what to train is the plan's business)."""

    epochs: int = 100
    iterations_per_epoch: int = 250
    learning_rate: float = 1e-3  # Adam, as DeepSC-COVID and MultiR-Net
    weight_decay: float = 3e-5
    device: str = "cpu"
    seed: int = 0
    num_workers: int = 0
    oversample_foreground: float = 0.33
    configuration: str = "fullres"  # or "lowres" when the plan has one
    plan_overrides: tuple[str, ...] = ()  # "section.field=value", see planning/overrides.py
    final_validation: bool = True  # sliding window over every validation case at the end
    resume: bool = False  # continue from checkpoint_latest.pt (exact with num_workers=0)


def resolve_device(name: str) -> torch.device:
    """``cpu`` or ``cuda[:N]``; asking for CUDA without one is an error, not a silent CPU run."""
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(
            "--device cuda was requested but torch sees no CUDA device; use --device cpu."
        )
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise ValueError(f"unknown device '{name}'; use cpu or cuda.")
    return torch.device(name)


def fold_cases(
    work_dir: Path, fold: str, configuration: str = "fullres"
) -> tuple[list[str], list[str]]:
    """Train and validation case ids of ``fold`` ('0'..'4' or 'all')."""
    pre = preprocessed_dir(work_dir, configuration)
    ids = sorted(p.stem for p in pre.glob("*.npz"))
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
        with np.load(pre_dir / f"{c}.npz") as f:
            view = torch.from_numpy(f["cls_data"][None]).to(device)
            ref = f["cls_seg"] if "cls_seg" in f.files else None
        diag = read_json(pre_dir / f"{c}.json")["diagnosis"]
        if net.cls is None:
            continue
        scales, logits, _ = net.classify(view)
        if diag in plan.classes:
            counted += 1
            correct += int(plan.classes[int(logits.argmax())] == diag)
        if ref is not None:
            pred = fuse_scales(scales, net.eta).argmax(1)[0].cpu().numpy() > 0
            inter += float(np.logical_and(pred, ref > 0).sum())
            denom += float(pred.sum() + (ref > 0).sum())
    net.train()
    out: dict[str, float] = {}
    if counted:
        out["val_accuracy"] = correct / counted
    if denom:
        out["val_view_dice"] = 2 * inter / denom
    return out


def _resume(
    out: Path,
    plan: Plan,
    net: JointNet,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loader: JointDataLoader,
    log: dict,
    device: torch.device,
) -> int:
    """Restore weights, optimiser, schedule, random streams and log from
    ``checkpoint_latest.pt``; returns the epoch to continue from (0 = nothing to resume)."""
    path = out / "checkpoint_latest.pt"
    if not path.is_file():
        logger.warning("--continue: %s not found; starting from scratch", path)
        return 0
    state = load_checkpoint(path, device)
    if Plan.from_dict(state["plan"], source=str(path)) != plan:
        raise ValueError(
            f"{path}: was trained with a different plan or --set options; resume with the "
            "same options, or train into a fresh fold directory."
        )
    net.load_state_dict(state["network"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["extra"]["scheduler"])
    restore_rng_state(state["extra"]["rng"], loader)
    log_path = out / "training_log.json"
    if log_path.is_file():
        log["epochs"] = read_json(log_path)["epochs"][: state["epoch"]]
    logger.info("resuming fold from epoch %d (%s)", state["epoch"], path)
    return int(state["epoch"])


def train_fold(work_dir: Path, fold: str, config: TrainerConfig) -> Path:
    """Train one fold; writes ``fold_FOLD/checkpoint_{latest,final}.pt``,
    ``training_log.json`` and (folds 0-4) ``validation/summary.json``. Returns the fold
    directory."""
    work_dir = Path(work_dir)
    plan = apply_overrides(
        Plan.load(work_dir / PLANS_FILE).for_configuration(config.configuration),
        config.plan_overrides,
    )
    device = resolve_device(config.device)
    get_segmentation_loss(plan.loss.segmentation, plan.loss)  # fail fast on a bad --set
    torch.manual_seed(config.seed)
    # batchgenerators' transforms draw from numpy's and Python's global generators; seed
    # both so a run is repeatable for a seed (our own sampling uses explicit Generators).
    np.random.seed(config.seed)
    random.seed(config.seed)
    train_ids, val_ids = fold_cases(work_dir, fold, config.configuration)
    out = fold_dir(work_dir, fold, config.configuration)
    out.mkdir(parents=True, exist_ok=True)
    pre_dir = preprocessed_dir(work_dir, config.configuration)

    net = JointNet(plan)
    init_weights(net)
    net.to(device)
    optimizer = torch.optim.Adam(
        net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    # Poly decay, as nnU-Net: large steps early, a gentle landing at the end.
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda e: (1 - e / max(config.epochs, 1)) ** 0.9
    )
    class_weights = torch.tensor(plan.class_weights or [1.0], dtype=torch.float32, device=device)
    loader = JointDataLoader(
        pre_dir,
        train_ids,
        patch_size=plan.patch_size,
        batch_size=plan.batch_size,
        classes=plan.classes,
        seed=config.seed,
        oversample_foreground=config.oversample_foreground,
        num_workers=max(config.num_workers, 1),
    )
    log: dict = {
        "fold": fold,
        "config": asdict(config),
        "train_cases": train_ids,
        "val_cases": val_ids,
        "epochs": [],
    }
    start_epoch = 0
    if config.resume:
        start_epoch = _resume(out, plan, net, optimizer, scheduler, loader, log, device)
    # Workers cannot restore the in-process loader's streams: offset their seeds instead,
    # so a resumed multi-worker run does not replay the first epochs' batches.
    batches = make_batch_iterator(loader, config.num_workers, config.seed + 1000 * start_epoch)
    logger.info(
        "fold %s: %d train / %d val cases, patch %s, batch %d, device %s",
        fold,
        len(train_ids),
        len(val_ids),
        plan.patch_size,
        plan.batch_size,
        device,
    )
    try:
        for epoch in range(start_epoch, config.epochs):
            t0 = time.perf_counter()
            sums = {"total": 0.0, "seg": 0.0, "cls": 0.0, "task_aware": 0.0}
            bar = tqdm(
                range(config.iterations_per_epoch),
                desc=f"epoch {epoch + 1}/{config.epochs}",
                unit="it",
                leave=False,
            )
            for _ in bar:
                batch = _to_device(next(batches), device)
                optimizer.zero_grad(set_to_none=True)
                output = net(batch["data"], batch["cls_data"] if plan.has_diagnosis else None)
                parts = joint_loss(net, output, batch, plan.loss_weights, class_weights, plan.loss)
                parts.total.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 12.0)
                optimizer.step()
                for k in sums:
                    sums[k] += float(getattr(parts, k).detach())
                bar.set_postfix(loss=f"{float(parts.total.detach()):.3f}")
            scheduler.step()
            n = max(config.iterations_per_epoch, 1)
            record = {
                "epoch": epoch + 1,
                **{f"loss_{k}": v / n for k, v in sums.items()},
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": time.perf_counter() - t0,
            }
            record.update(validate(net, plan, pre_dir, val_ids, device))
            log["epochs"].append(record)
            logger.info(
                "epoch %d: %s",
                epoch + 1,
                ", ".join(f"{k}={v:.4g}" for k, v in record.items() if k != "epoch"),
            )
            save_checkpoint(
                out / "checkpoint_latest.pt",
                net=net,
                optimizer=optimizer,
                plan=plan,
                epoch=epoch + 1,
                extra={
                    "fold": fold,
                    "scheduler": scheduler.state_dict(),
                    "rng": capture_rng_state(loader),
                },
            )
            write_json(log, out / "training_log.json")
    finally:
        if hasattr(batches, "_finish"):
            batches._finish()
    save_checkpoint(
        out / "checkpoint_final.pt",
        net=net,
        optimizer=None,
        plan=plan,
        epoch=config.epochs,
        extra={"fold": fold},
    )
    if val_ids and config.final_validation:
        write_validation(validate_cases(net, plan, pre_dir, val_ids, device), out)
    return out
