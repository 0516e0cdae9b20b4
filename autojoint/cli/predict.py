"""``autojoint_predict``: lesion masks and diagnoses for a folder of scans."""

from __future__ import annotations

import argparse
from pathlib import Path

from autojoint.cli.common import add_verbosity, add_work_dir, run
from autojoint.inference.predictor import predict_folder
from autojoint.io.paths import output_dir_problem
from autojoint.planning.schema import CONFIGURATIONS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="autojoint_predict",
        description="Predict every image in INPUT_DIR (CASE_0000.nii.gz, CASE.nii.gz or a DICOM "
        "series folder): writes OUTPUT_DIR/CASE.nii.gz on the input grid and "
        "OUTPUT_DIR/diagnoses.csv (case,diagnosis,p_<class>...).",
    )
    parser.add_argument("-i", "--input", type=Path, required=True, help="folder of input scans")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    add_work_dir(parser)
    parser.add_argument(
        "-f",
        "--folds",
        nargs="+",
        default=None,
        help="folds to ensemble (default: every fold with checkpoint_final.pt)",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument(
        "--step-size",
        type=float,
        default=0.5,
        help="sliding-window step as a fraction of the patch (default 0.5)",
    )
    parser.add_argument(
        "-c",
        "--configuration",
        choices=CONFIGURATIONS,
        default="fullres",
        help="which trained configuration to use: fullres (default) or lowres",
    )
    parser.add_argument(
        "--evidence",
        action="store_true",
        help="also write OUTPUT_DIR/CASE_evidence.nii.gz: the classifier's evidence map (eq. 5) "
        "for the predicted diagnosis, in [0, 1], on the input grid",
    )
    add_verbosity(parser)
    args = parser.parse_args(argv)
    if not 0 < args.step_size <= 1:
        parser.error("--step-size must be in (0, 1]")
    if problem := output_dir_problem([args.input], args.output):
        parser.error(problem)
    return run(
        lambda: predict_folder(
            args.input,
            args.output,
            args.work_dir,
            folds=args.folds,
            device=args.device,
            step_fraction=args.step_size,
            configuration=args.configuration,
            evidence=args.evidence,
        ),
        args.verbose,
    )
