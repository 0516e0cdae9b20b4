"""``autojoint_plan``: fingerprint a raw dataset, plan the experiment, preprocess."""

from __future__ import annotations

import argparse
from pathlib import Path

from autojoint.cli.common import (
    EXIT_DATASET,
    EXIT_ENVIRONMENT,
    EXIT_OK,
    add_plan_overrides,
    add_verbosity,
    add_work_dir,
    plan_overrides,
    run,
)
from autojoint.io.verify import verify_dataset
from autojoint.io.workdir import PLANS_FILE
from autojoint.pipeline import plan_and_preprocess
from autojoint.planning.explain import explain_plan
from autojoint.planning.schema import CONFIGURATIONS, Plan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="autojoint_plan",
        description="Fingerprint RAW_DATASET (nnU-Net v2 layout + optional diagnoses), derive "
        "plans.json for the detected accelerator, and preprocess into WORK_DIR.",
    )
    parser.add_argument(
        "-d",
        "--dataset",
        type=Path,
        default=None,
        help="raw dataset folder (dataset.json, imagesTr/, labelsTr/, diagnosesTr.csv); "
        "required unless --explain only reads an existing WORK_DIR/plans.json",
    )
    add_work_dir(parser, required=False)
    parser.add_argument(
        "--verify",
        action="store_true",
        help="only check RAW_DATASET (and WORK_DIR if given): list every problem with its "
        "file and fix, write nothing; exit 0 ok, 3 dataset problems, 4 environment problems",
    )
    parser.add_argument(
        "--no-preprocess", action="store_true", help="only write fingerprint.json and plans.json"
    )
    parser.add_argument(
        "-j",
        "--num-workers",
        type=int,
        default=1,
        help="parallel worker processes over cases (default 1)",
    )
    parser.add_argument(
        "--gpu-memory-gb",
        type=float,
        default=None,
        help="the memory budget in GB, used as given instead of the detected device's: what "
        "the plan's activation estimate may reach, not the device size (a detected CUDA "
        "device of D GB gives (D - 1.5) x 0.9, leaving room for the CUDA context, weights, "
        "optimiser state and workspace; docs/planning.md, 'Budget')",
    )
    parser.add_argument(
        "-c",
        "--configurations",
        nargs="+",
        choices=CONFIGURATIONS,
        default=None,
        help="configurations to preprocess (default: fullres, plus lowres when planned; "
        "2D datasets: 2d). Add 2d to also train slices of 3D volumes (autojoint_train -c 2d)",
    )
    parser.add_argument(
        "--lung-mask",
        choices=("off", "crop", "mask"),
        default="off",
        help="crop every CT to its lungs (crop), and also set voxels outside them to air "
        "(mask, as DeepSC-COVID); default off: crop to the body",
    )
    add_plan_overrides(
        parser,
        preset_help="plan for a published system's switches, losses, loss weights and "
        "training schedule (deepsc-covid, multir-net, msd-net; docs/architecture.md): stored "
        "in plans.json (autojoint_train then trains its schedule), and its network switches "
        "enter the memory fit of patch and batch; --set items apply after it",
        set_help="a plan switch to store (and fit the memory to), e.g. --set "
        "network.refinement_passes=2 (repeatable; same items as autojoint_train --set)",
    )
    parser.add_argument(
        "--explain",
        action="store_true",
        help="print every planned number with the rule behind it (after planning, or for "
        "the existing WORK_DIR/plans.json when -d is not given)",
    )
    add_verbosity(parser)
    args = parser.parse_args(argv)
    if args.dataset is None and not args.explain:
        parser.error("-d/--dataset is required (or use --explain to show an existing plan)")
    if (args.preset != "default" or args.overrides) and (args.verify or args.dataset is None):
        parser.error("--preset/--set apply when planning: give -d/--dataset, without --verify")
    if args.verify:
        if args.dataset is None:
            parser.error("--verify needs -d/--dataset")
    elif args.work_dir is None:
        parser.error("-w/--work-dir is required (or set $AUTOJOINT_WORK)")

    def verify() -> int:
        report = verify_dataset(args.dataset, args.work_dir, num_workers=args.num_workers)
        print(report.format())
        if report.has_dataset_errors or report.dataset is None:
            return EXIT_DATASET
        return EXIT_ENVIRONMENT if report.has_environment_errors else EXIT_OK

    def job() -> None:
        if args.dataset is not None:
            plan = plan_and_preprocess(
                args.dataset,
                args.work_dir,
                num_workers=args.num_workers,
                gpu_memory_gb=args.gpu_memory_gb,
                preprocess=not args.no_preprocess,
                configurations=args.configurations,
                lung_mask=args.lung_mask,
                overrides=plan_overrides(args),
            )
        else:
            plan = Plan.load(args.work_dir / PLANS_FILE)
        if args.explain:
            print(explain_plan(plan))

    return run(verify if args.verify else job, args.verbose)
