"""``autojoint_calibrate``: fit the temperature of a trained model's diagnosis probabilities
on its cross-validation predictions (``calibration.json`` beside its folds)."""

from __future__ import annotations

import argparse

from autojoint.cli.common import (
    add_configuration,
    add_variant,
    add_verbosity,
    add_work_dir,
    resolve_configuration,
    run,
)
from autojoint.evaluation.cv_predictions import ALL_FOLDS
from autojoint.evaluation.model_calibration import calibrate_model
from autojoint.io.calibration import calibration_path
from autojoint.io.variants import resolve_variant


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="autojoint_calibrate",
        description="Temperature scaling of the diagnosis probabilities: one temperature "
        "fitted by minimising the negative log-likelihood on the pooled final validations "
        "of the folds; written to calibration.json beside the folds, which autojoint_predict "
        "then applies (pcal_<class> columns of diagnoses.csv). docs/model_selection.md.",
    )
    add_work_dir(parser)
    add_configuration(parser)
    add_variant(parser, "calibrate")
    parser.add_argument(
        "--folds",
        nargs="+",
        default=list(ALL_FOLDS),
        help="the folds whose validation is pooled (default 0 1 2 3 4: all required)",
    )
    add_verbosity(parser)
    args = parser.parse_args(argv)

    def job() -> None:
        configuration = resolve_configuration(args.work_dir, args.configuration)
        folder = resolve_variant(args.work_dir, args.variant, configuration)
        record = calibrate_model(folder, args.folds)
        print(
            f"temperature {record.temperature:.4f} ({record.num_cases} cases; NLL "
            f"{record.nll_before:.4f} -> {record.nll_after:.4f}, ECE {record.ece_before:.4f} "
            f"-> {record.ece_after:.4f}) -> {calibration_path(folder)}"
        )

    return run(job, args.verbose)
