"""``autojoint_evaluate``: score predicted masks and diagnoses against references."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from autojoint.cli.common import add_verbosity, run
from autojoint.evaluation.evaluate import evaluate_folder, write_summary
from autojoint.io.files import read_json

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="autojoint_evaluate",
        description="Dice per lesion label (and all lesions together) for every reference mask "
        "in REF_LABELS_DIR, plus diagnosis accuracy, sensitivity, specificity, F1 and "
        "AUC when --diagnoses is given. Writes SUMMARY_JSON.",
    )
    parser.add_argument(
        "-p",
        "--pred",
        type=Path,
        required=True,
        help="autojoint_predict output folder (CASE.nii.gz, diagnoses.csv)",
    )
    parser.add_argument("-r", "--ref", type=Path, required=True, help="reference masks CASE.nii.gz")
    parser.add_argument(
        "--diagnoses", type=Path, default=None, help="reference diagnoses CSV (case,diagnosis)"
    )
    parser.add_argument(
        "--dataset-json",
        type=Path,
        default=None,
        help="dataset.json whose 'labels' name the label values (optional)",
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="summary JSON to write")
    add_verbosity(parser)
    args = parser.parse_args(argv)

    def job() -> None:
        labels = None
        if args.dataset_json is not None:
            labels = {k: v for k, v in read_json(args.dataset_json)["labels"].items() if v != 0}
        summary = evaluate_folder(
            args.pred, args.ref, label_values=labels, ref_diagnoses_csv=args.diagnoses
        )
        write_summary(summary, args.output)
        lesion = summary["mean"].get("lesion", {})
        line = f"mean lesion Dice {lesion.get('dice', float('nan')):.4f}"
        if summary.get("classification"):
            line += f", diagnosis accuracy {summary['classification']['accuracy']:.4f}"
        print(f"{line} ({summary['num_cases']} cases) -> {args.output}")

    return run(job, args.verbose)
