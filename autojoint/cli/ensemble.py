"""``autojoint_ensemble``: the mean of several prediction folders written with
``autojoint_predict --save-probabilities``."""

from __future__ import annotations

import argparse
from pathlib import Path

from autojoint.cli.common import add_verbosity, add_work_dir, run
from autojoint.inference.folder_ensemble import ensemble_folders
from autojoint.io.paths import output_dir_problem
from autojoint.io.workdir import PLANS_FILE
from autojoint.planning.schema import Plan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="autojoint_ensemble",
        description="Average the probabilities of two or more autojoint_predict output folders "
        "(each written with --save-probabilities, from the same inputs): writes "
        "OUTPUT_DIR/CASE.nii.gz (argmax of the mean label probabilities), CASE.json and "
        "diagnoses.csv (mean diagnosis probabilities), as autojoint_predict does. "
        "docs/model_selection.md.",
    )
    parser.add_argument(
        "-i", "--input", nargs="+", type=Path, required=True, help="prediction folders"
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    add_work_dir(parser)
    parser.add_argument(
        "--save-probabilities",
        action="store_true",
        help="also write OUTPUT_DIR/CASE_probabilities.npz (the mean probabilities)",
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="also write calibrated diagnosis probabilities (pcal_<class> columns) with this "
        "temperature (best_configuration.json 'temperature')",
    )
    add_verbosity(parser)
    args = parser.parse_args(argv)
    if len(args.input) < 2:
        parser.error("give at least two prediction folders to -i")
    if problem := output_dir_problem(args.input, args.output):
        parser.error(problem)
    if args.temperature is not None and not args.temperature > 0:
        parser.error("--temperature must be > 0")

    def job() -> None:
        plan = Plan.load(args.work_dir / PLANS_FILE)
        cases = ensemble_folders(
            args.input,
            args.output,
            plan,
            temperature=args.temperature,
            save_probabilities=args.save_probabilities,
        )
        print(f"ensembled {len(cases)} case(s) of {len(args.input)} folders -> {args.output}")

    return run(job, args.verbose)
