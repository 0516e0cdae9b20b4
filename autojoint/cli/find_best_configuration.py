"""``autojoint_find_best_configuration``: rank the trained models and their ensembles on the
cross-validation predictions; write ``WORK/best_configuration.json`` for
``autojoint_predict --spec``."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from autojoint.cli.common import add_verbosity, add_work_dir, run
from autojoint.evaluation.cv_predictions import ALL_FOLDS
from autojoint.evaluation.model_selection import DEFAULT_WEIGHTS, find_best_configuration
from autojoint.io.best_configuration import BEST_CONFIGURATION_FILE, write_best_configuration


def _cell(value: float) -> str:
    return f"{value:.4f}" if math.isfinite(value) else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="autojoint_find_best_configuration",
        description="Rank every trained model (variant x configuration) and every ensemble of "
        "two models of one configuration on the final validations of all folds (lesion Dice, "
        "diagnosis accuracy, macro-AUC); choose the diagnosis gate (empty masks for cases "
        "called a lesion-free class), postprocessing and the diagnosis temperature for the "
        "best; write WORK_DIR/best_configuration.json (the ranking, the choice and "
        "the autojoint_predict command) and each model's calibration.json. "
        "docs/model_selection.md.",
    )
    add_work_dir(parser)
    parser.add_argument(
        "--folds",
        nargs="+",
        default=list(ALL_FOLDS),
        help="the folds whose validation is pooled (default 0 1 2 3 4: all required)",
    )
    parser.add_argument(
        "--weights",
        nargs=2,
        type=float,
        default=list(DEFAULT_WEIGHTS),
        metavar=("DICE", "AUC"),
        help="score = (DICE * lesion Dice + AUC * macro-AUC) / (DICE + AUC) (default 1 1)",
    )
    parser.add_argument(
        "--no-ensembles",
        action="store_true",
        help="rank single models only (ensembles need --save-validation-probabilities)",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help=f"where to write the choice (default WORK_DIR/{BEST_CONFIGURATION_FILE})",
    )
    add_verbosity(parser)
    args = parser.parse_args(argv)
    spec_path = args.output or args.work_dir / BEST_CONFIGURATION_FILE

    def job() -> None:
        record = find_best_configuration(
            args.work_dir,
            spec_path,
            folds=args.folds,
            weights=(args.weights[0], args.weights[1]),
            use_ensembles=not args.no_ensembles,
        )
        write_best_configuration(spec_path, record)
        print("score   lesion_dice  accuracy  macro_auc  candidate")
        for row in record.ranking:
            print(
                f"{_cell(row.score)}  {_cell(row.lesion_dice)}       {_cell(row.accuracy)}    "
                f"{_cell(row.macro_auc)}     {row.name}"
            )
        print(f"best: {record.ranking[0].name} -> {spec_path}")
        if (gate := record.diagnosis_gate) is not None:
            print(
                f"diagnosis gate: empty masks of cases called {', '.join(gate.classes)} "
                f"(lesion Dice {gate.dice_before:.4f} -> {gate.dice_after:.4f}; "
                f"{gate.cases_emptied} case(s) emptied, {gate.lesion_cases_emptied} with lesions)"
            )
        print(record.predict_command)

    return run(job, args.verbose)
