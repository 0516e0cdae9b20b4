"""``autojoint_train``: train the joint network on one cross-validation fold."""

from __future__ import annotations

import argparse
import os

from autojoint.cli.common import (
    add_configuration,
    add_plan_overrides,
    add_verbosity,
    add_work_dir,
    plan_overrides,
    resolve_configuration,
    run,
)
from autojoint.data.augmentation import AUGMENTATION_PRESETS
from autojoint.io.variants import variant_name_problem
from autojoint.runtime.devices import PRECISION_CHOICES
from autojoint.training.config import PLAN_SCHEDULE, TrainerConfig
from autojoint.training.distributed import context_from_env
from autojoint.training.launch import train_fold
from autojoint.training.schedule import (
    DEFAULT_LR,
    OPTIMIZERS,
    SCHEDULES,
    TASK_AWARE_WARMUPS,
)


def main(argv: list[str] | None = None) -> int:
    d = TrainerConfig()
    parser = argparse.ArgumentParser(
        prog="autojoint_train",
        description="Train the joint segmentation + diagnosis network on FOLD; writes "
        "WORK_DIR/fold_FOLD/ (checkpoint_final.pt, checkpoint_latest.pt, checkpoint_best.pt, "
        "training_log.json, trainer_config.json, progress.png), or with --preset/--set "
        "WORK_DIR/variants/VARIANT/CONFIGURATION/fold_FOLD/, and records the variant in "
        "WORK_DIR/variants.json.",
    )
    parser.add_argument("fold", help="cross-validation fold 0-4, or 'all' to train on every case")
    add_work_dir(parser)
    parser.add_argument("--epochs", type=int, default=d.epochs, help=f"default {d.epochs}")
    parser.add_argument(
        "--iterations-per-epoch",
        type=int,
        default=d.iterations_per_epoch,
        help=f"default {d.iterations_per_epoch}",
    )
    parser.add_argument(
        "--device",
        default=d.device,
        help="auto (CUDA, else MPS, else CPU; default), cpu, cuda, cuda:N or mps",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISION_CHOICES,
        default=d.precision,
        help="auto (default): float16 autocast with loss scaling on CUDA, float32 elsewhere; "
        "bfloat16: bfloat16 autocast (a CPU with native bfloat16, about 1.7x faster per step "
        "here; docs/training.md); float32: no autocast",
    )
    parser.add_argument(
        "--num-gpus",
        type=int,
        default=d.num_gpus,
        help="train data-parallel (DDP) on N GPUs, the plan's batch split across them "
        "(with --device cpu: N gloo processes). Launching under torchrun also trains DDP.",
    )
    parser.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        default=None,
        help="sgd (Nesterov momentum 0.99; default for the joint schedule) or adam (default "
        "for the two-stage schedule)",
    )
    parser.add_argument(
        "--lr",
        type=float,
        default=None,
        help=f"initial learning rate (default {DEFAULT_LR['sgd']} for sgd, "
        f"{DEFAULT_LR['adam']} for adam)",
    )
    parser.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default=None,
        help="joint (all parameters and losses, poly decay) or two-stage (the papers: "
        "pre-train the segmentation path, then the classification path, then fine-tune "
        "jointly at lr/10; see docs/training.md). Default: the plan's training.schedule "
        "(joint unless planned or trained with --preset deepsc-covid or --set "
        "training.schedule=two-stage)",
    )
    parser.add_argument(
        "--task-aware-warmup",
        choices=TASK_AWARE_WARMUPS,
        default=d.task_aware_warmup,
        help="past-chance (default: the task-aware loss is off until the diagnosis loss is "
        "below 0.8 ln(C), then ramps in over a tenth of the epochs) or off (full weight from "
        "the first step)",
    )
    parser.add_argument(
        "--augmentation",
        choices=AUGMENTATION_PRESETS,
        default=d.augmentation,
        help="none, light (noise, gamma, mirroring) or default (nnU-Net's: rotation, scaling, "
        "noise, blur, brightness, contrast, low resolution, gamma, mirroring)",
    )
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=d.checkpoint_every,
        help=f"write checkpoint_latest.pt every N epochs (default {d.checkpoint_every}; "
        "always after the last)",
    )
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument(
        "--num-workers",
        type=int,
        default=d.num_workers,
        help="data-augmentation worker processes (0 = in the main process)",
    )
    add_configuration(parser, "; lowres only when the plan has one, written to WORK_DIR/lowres/")
    parser.add_argument(
        "--continue",
        dest="resume",
        action="store_true",
        help="resume from fold_FOLD/checkpoint_latest.pt (weights, optimiser, schedule, random "
        "streams; bit-exact with --num-workers 0); starts fresh if there is none",
    )
    parser.add_argument(
        "--skip-validation",
        action="store_true",
        help="skip the final sliding-window validation (fold_FOLD/validation/summary.json)",
    )
    parser.add_argument(
        "--no-validation-tta",
        action="store_true",
        help="final validation without mirroring test-time augmentation (default: mirror "
        "over the axes training mirrored, as autojoint_predict does; 2^axes passes per tile)",
    )
    parser.add_argument(
        "--save-validation-probabilities",
        action="store_true",
        help="keep each validation case's probabilities (segmentation softmax on the "
        "preprocessed grid, diagnosis probabilities) in fold_FOLD/validation/"
        "CASE_probabilities.npz, for autojoint_find_best_configuration's ensembles and "
        "postprocessing (docs/model_selection.md)",
    )
    add_plan_overrides(
        parser,
        preset_help="a published system's switches and losses (deepsc-covid, multir-net, "
        "msd-net; docs/architecture.md), including the training schedule unless --schedule "
        "is given; --set items apply after it",
        set_help="override a plan switch for this run, e.g. --set "
        "network.reverse_attention=true --set loss.segmentation=focal_tversky --set "
        "loss_weights.task_aware=0 (repeatable; the checkpoint stores the resulting plan)",
    )
    parser.add_argument(
        "--variant",
        default=None,
        metavar="NAME",
        help="name this run's variant: its folds go to WORK_DIR/variants/NAME/CONFIGURATION/ "
        "(NAME 'default': WORK_DIR/fold_FOLD). Default: named from --preset and --set (e.g. "
        "msd-net, default+loss.batch_dice=true), or 'default' when they leave the plan "
        "unchanged; a variant whose folds hold another plan is never overwritten "
        '(docs/training.md, "Variants")',
    )
    add_verbosity(parser)
    args = parser.parse_args(argv)
    if args.variant is not None and (problem := variant_name_problem(args.variant)):
        parser.error(problem)
    if args.epochs < 1 or args.iterations_per_epoch < 1:
        parser.error("--epochs and --iterations-per-epoch must be >= 1")
    if args.num_gpus < 1 or args.checkpoint_every < 1:
        parser.error("--num-gpus and --checkpoint-every must be >= 1")
    if args.schedule == "two-stage" and args.epochs < 3:
        parser.error("--schedule two-stage needs --epochs >= 3")
    ctx = context_from_env(os.environ)  # launched under torchrun: this process is one rank
    if ctx.is_distributed and args.num_gpus > 1:
        parser.error("use either torchrun or --num-gpus, not both")
    config = TrainerConfig(
        epochs=args.epochs,
        iterations_per_epoch=args.iterations_per_epoch,
        optimizer=args.optimizer or "auto",
        learning_rate=args.lr,
        schedule=args.schedule or PLAN_SCHEDULE,
        augmentation=args.augmentation,
        device=args.device,
        precision=args.precision,
        num_gpus=args.num_gpus,
        checkpoint_every=args.checkpoint_every,
        seed=args.seed,
        num_workers=args.num_workers,
        configuration=resolve_configuration(args.work_dir, args.configuration),
        plan_overrides=plan_overrides(args),
        resume=args.resume,
        final_validation=not args.skip_validation,
        use_validation_tta=not args.no_validation_tta,
        save_validation_probabilities=args.save_validation_probabilities,
        task_aware_warmup=args.task_aware_warmup,
        variant=args.variant,
    )
    return run(
        lambda: train_fold(args.work_dir, args.fold, config, ctx if ctx.is_distributed else None),
        args.verbose,
    )
