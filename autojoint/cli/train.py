"""``autojoint_train``: train the joint network on one cross-validation fold."""

from __future__ import annotations

import argparse

from autojoint.cli.common import add_verbosity, add_work_dir, run
from autojoint.planning.presets import PRESETS, preset_overrides
from autojoint.planning.schema import CONFIGURATIONS
from autojoint.training.trainer import TrainerConfig, train_fold


def main(argv: list[str] | None = None) -> int:
    d = TrainerConfig()
    parser = argparse.ArgumentParser(
        prog="autojoint_train",
        description="Train the joint segmentation + diagnosis network on FOLD; writes "
        "WORK_DIR/fold_FOLD/ (checkpoint_final.pt, checkpoint_latest.pt, training_log.json).",
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
    parser.add_argument("--device", default=d.device, help="cpu or cuda (default cpu)")
    parser.add_argument(
        "--lr",
        type=float,
        default=d.learning_rate,
        help=f"Adam learning rate (default {d.learning_rate})",
    )
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument(
        "--num-workers",
        type=int,
        default=d.num_workers,
        help="data-augmentation worker processes (0 = in the main process)",
    )
    parser.add_argument(
        "-c",
        "--configuration",
        choices=CONFIGURATIONS,
        default="fullres",
        help="fullres (default) or lowres (only when the plan has one; writes "
        "WORK_DIR/lowres/fold_FOLD/)",
    )
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
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override a plan switch for this run, e.g. --set network.reverse_attention=true "
        "--set loss.segmentation=focal_tversky --set loss_weights.task_aware=0 (repeatable; "
        "the checkpoint stores the resulting plan)",
    )
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="default",
        help="a published system's switches and losses (deepsc-covid, multir-net, msd-net; "
        "docs/architecture.md); --set items apply after it",
    )
    add_verbosity(parser)
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.iterations_per_epoch < 1:
        parser.error("--epochs and --iterations-per-epoch must be >= 1")
    config = TrainerConfig(
        epochs=args.epochs,
        iterations_per_epoch=args.iterations_per_epoch,
        learning_rate=args.lr,
        device=args.device,
        seed=args.seed,
        num_workers=args.num_workers,
        configuration=args.configuration,
        plan_overrides=preset_overrides(args.preset) + tuple(args.overrides),
        resume=args.resume,
        final_validation=not args.skip_validation,
    )
    return run(lambda: train_fold(args.work_dir, args.fold, config), args.verbose)
