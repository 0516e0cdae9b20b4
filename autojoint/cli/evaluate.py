"""``autojoint_evaluate``: score predicted masks and diagnoses against references."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from autojoint.cli.common import add_verbosity, run
from autojoint.evaluation.evaluate import evaluate_folder, write_report
from autojoint.io.files import read_json

logger = logging.getLogger(__name__)


def _labels_from_dataset_json(path: Path) -> dict[str, int]:
    """Non-background ``name: value`` pairs of a dataset.json's ``labels``."""
    data = read_json(path)
    labels = data.get("labels") if isinstance(data, dict) else None
    if not isinstance(labels, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in labels.values()
    ):
        raise ValueError(
            f"{path}: needs a 'labels' object of name: integer value pairs, "
            'e.g. {"background": 0, "lesion": 1}'
        )
    return {str(k): int(v) for k, v in labels.items() if v != 0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="autojoint_evaluate",
        description="Dice, IoU, sensitivity, specificity, precision, NSD, ASD, HD95, RMSD, ASO "
        "and lesion volumes per lesion label (and all lesions together) for every reference "
        "mask in REF_LABELS_DIR, plus diagnosis accuracy, per-class sensitivity, specificity, "
        "precision, F1, AUC and the confusion matrix when --diagnoses is given. Writes "
        "SUMMARY_JSON and PNG figures beside it. Definitions: docs/evaluation.md.",
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
    parser.add_argument(
        "--tolerance",
        type=float,
        default=1.0,
        help="NSD and ASO tolerance in mm (default 1.0)",
    )
    parser.add_argument(
        "--surfel-nsd",
        action="store_true",
        help="also report nsd_surfel: NSD with surface elements weighted by area "
        "(DeepMind's surface-distance convention), beside the voxel-count nsd",
    )
    parser.add_argument(
        "-j",
        "--num-workers",
        type=int,
        default=1,
        help="cases scored in parallel processes (default 1)",
    )
    parser.add_argument(
        "--no-figures",
        action="store_true",
        help="write only SUMMARY_JSON, no PNGs (ROC, confusion matrix, Bland-Altman, box plots)",
    )
    add_verbosity(parser)
    args = parser.parse_args(argv)

    def job() -> None:
        labels = None
        if args.dataset_json is not None:
            labels = _labels_from_dataset_json(args.dataset_json)
        if args.num_workers < 1:
            raise ValueError(f"-j/--num-workers must be at least 1, got {args.num_workers}")
        summary = evaluate_folder(
            args.pred,
            args.ref,
            label_values=labels,
            ref_diagnoses_csv=args.diagnoses,
            tolerance_mm=args.tolerance,
            num_workers=args.num_workers,
            use_surfel_nsd=args.surfel_nsd,
        )
        write_report(summary, args.output, figures=not args.no_figures)
        lesion = summary["mean"].get("lesion", {})
        nan = float("nan")
        line = (
            f"mean lesion Dice {lesion.get('dice', nan):.4f}, "
            f"NSD@{args.tolerance:g}mm {lesion.get('nsd', nan):.4f}, "
            f"HD95 {lesion.get('hd95', nan):.2f} mm"
        )
        if args.surfel_nsd:
            line += f", surfel NSD {lesion.get('nsd_surfel', nan):.4f}"
        dx = summary.get("diagnosis")
        if dx:
            line += f", diagnosis accuracy {dx['accuracy']:.4f}, macro-AUC {dx['macro_auc']:.4f}"
        cal = summary.get("calibration") or {}
        for key in ("uncalibrated", "calibrated"):
            if block := cal.get(key):
                line += f", {key} ECE {block['ece']:.4f} Brier {block['brier']:.4f}"
        print(f"{line} ({summary['num_cases']} cases) -> {args.output}")

    return run(job, args.verbose)
