"""``autojoint_predict``: lesion masks and diagnoses for a folder of scans."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from autojoint.cli.common import (
    EXIT_SOME_FAILED,
    add_configuration,
    add_fold_checkpoints,
    add_variant,
    add_verbosity,
    add_work_dir,
    resolve_configuration,
    run,
)
from autojoint.cli.gpu_parts import run_gpu_parts
from autojoint.inference.evidence import DEFAULT_EVIDENCE, EVIDENCE_METHODS
from autojoint.inference.folder_tables import FAILURES_CSV
from autojoint.inference.outputs import NIFTI, OUTPUT_FORMATS
from autojoint.inference.parts import part_problem
from autojoint.inference.predict_options import PredictionReport, PredictOptions
from autojoint.inference.predictor import run_prediction
from autojoint.inference.spec_prediction import predict_with_spec
from autojoint.io.best_configuration import BEST_CONFIGURATION_FILE
from autojoint.io.dicom_series import AUTO, SeriesChoice
from autojoint.io.paths import output_dir_problem
from autojoint.runtime.devices import PRECISION_CHOICES

DEFAULT_STEP = PredictOptions.step_fraction

# Exit codes (docs/cli.md): 0 every case predicted; 1 nothing could run (one-line error);
# 2 bad arguments (argparse); 6 some cases failed (listed in OUTPUT_DIR/failures.csv), the
# others were written. Not the dataset check's 3: a script must be able to tell "some
# outputs are missing" from "the raw dataset is bad".


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="autojoint_predict",
        description="Predict every image in INPUT_DIR (CASE_0000.nii.gz, CASE.nii.gz or a DICOM "
        "series folder): writes OUTPUT_DIR/CASE.nii.gz on the input grid and "
        "OUTPUT_DIR/diagnoses.csv (case,diagnosis,p_<class>...,volumes) and diagnoses.json. "
        "Exit code 0: all cases predicted; 1: error before any case; 6: some cases failed, "
        "the others were written (see OUTPUT_DIR/failures.csv).",
    )
    parser.add_argument("-i", "--input", type=Path, required=True, help="folder of input scans")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    add_work_dir(parser)
    add_fold_checkpoints(parser, "ensemble")
    parser.add_argument(
        "--device",
        default=PredictOptions.device,
        help="auto (CUDA, else MPS, else CPU; default, as autojoint_train), cpu, cuda, "
        "cuda:N or mps; the log names the device chosen",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISION_CHOICES,
        default=PredictOptions.precision,
        help="auto (default): float16 autocast on CUDA, as the networks trained; bfloat16 "
        "autocast on a CPU with native bfloat16 instructions (AVX512-BF16/AMX: about 2x "
        "faster, docs/prediction.md); float32 elsewhere. float32: no autocast, results "
        "identical on every CPU",
    )
    parser.add_argument(
        "--step-size",
        type=float,
        default=DEFAULT_STEP,
        help=f"sliding-window step as a fraction of the patch (default {DEFAULT_STEP}, with "
        "--fast too: a larger step without mirroring cost 0.15 Dice on the demo)",
    )
    parser.add_argument(
        "--fast",
        action="store_true",
        help="speed over the last bit of accuracy, for CPUs: no mirroring (6.4x faster on the "
        "demo for -0.019 lesion Dice); docs/prediction.md compares it with larger steps",
    )
    add_configuration(parser)
    add_variant(parser, "predict with")
    parser.add_argument(
        "--evidence",
        nargs="?",
        const=DEFAULT_EVIDENCE,
        default=None,
        choices=sorted(EVIDENCE_METHODS),
        metavar="METHOD",
        help="also write OUTPUT_DIR/CASE_evidence.nii.gz (evidence map for the predicted "
        "diagnosis, in [0, 1], on the input grid) and CASE_evidence.png (axial montage). "
        f"METHOD: {', '.join(sorted(EVIDENCE_METHODS))} (bare flag: {DEFAULT_EVIDENCE}, the "
        "classifier's class activation map, docs/methods.md; gradcam: Grad-CAM at the "
        "classifier's deepest unit, for any configuration)",
    )
    parser.add_argument(
        "--tile-batch",
        type=int,
        default=None,
        help="sliding-window tiles per forward pass (default: the plan's batch size)",
    )
    parser.add_argument(
        "--no-tta",
        action="store_true",
        help="no mirroring test-time augmentation (default: mirror over the axes the "
        "trainer mirrored, 2^axes passes per tile)",
    )
    parser.add_argument(
        "--save-probabilities",
        action="store_true",
        help="also write OUTPUT_DIR/CASE_probabilities.npz: per-label probabilities "
        "(float16, compressed) on the input grid",
    )
    parser.add_argument(
        "--report",
        action="store_true",
        help="also write OUTPUT_DIR/report/index.html (every case: diagnosis, probability, "
        "fold agreement, lesion volumes, lung involvement) and a page per case (axial, "
        "coronal, sagittal views with lesions and evidence map): static HTML for any "
        "browser. Implies --evidence (cam) unless --evidence names a method",
    )
    parser.add_argument(
        "--continue",
        dest="resume",
        action="store_true",
        help="skip cases whose outputs an earlier (e.g. killed) run completed",
    )
    parser.add_argument(
        "--num-parts",
        type=int,
        default=PredictOptions.num_parts,
        metavar="N",
        help="split INPUT_DIR into N parts for N processes or machines writing into the same "
        "OUTPUT_DIR (default 1: the whole folder); each predicts every N-th case of the "
        "sorted list, and whichever part ends last leaves diagnoses.csv complete",
    )
    parser.add_argument(
        "--part-id",
        type=int,
        default=PredictOptions.part_id,
        metavar="K",
        help="which part this process predicts, 0 to N-1 (default 0)",
    )
    parser.add_argument(
        "--num-gpus",
        type=int,
        default=1,
        metavar="G",
        help="run G parts at once on this machine, one process per GPU (CUDA_VISIBLE_DEVICES "
        "set per part; with --device cpu: G CPU processes); the exit code is 0 only if every "
        "part's is. Across machines use --num-parts/--part-id instead",
    )
    parser.add_argument(
        "--output-format",
        nargs="+",
        choices=OUTPUT_FORMATS,
        default=[NIFTI],
        help="how each mask is written: nifti (OUTPUT_DIR/CASE.nii.gz, the default) and/or "
        "dicom-seg (OUTPUT_DIR/CASE_seg.dcm referencing the input series; DICOM inputs only, "
        "needs the 'dicom' extra)",
    )
    parser.add_argument(
        "--series-uid",
        nargs="+",
        default=[],
        metavar="UID",
        help="for a DICOM folder holding several series (refused by default, with the list): "
        f"read the series with this SeriesInstanceUID; '{AUTO}' reads the axial CT series "
        "with the most slices (logged and recorded in CASE.json)",
    )
    parser.add_argument(
        "--spec",
        type=Path,
        default=None,
        metavar="FILE",
        help="predict as FILE (autojoint_find_best_configuration's best_configuration.json) "
        "says: its model or ensemble of models, folds, postprocessing and calibration "
        "(docs/model_selection.md)",
    )
    parser.add_argument(
        "--best",
        action="store_true",
        help=f"--spec WORK_DIR/{BEST_CONFIGURATION_FILE}",
    )
    add_verbosity(parser)
    parser.epilog = "-v/--verbose also logs a per-case timing breakdown."
    args = parser.parse_args(argv)
    if not 0 < args.step_size <= 1:
        parser.error("--step-size must be in (0, 1]")
    if problem := output_dir_problem([args.input], args.output):
        parser.error(problem)
    if args.tile_batch is not None and args.tile_batch < 1:
        parser.error("--tile-batch must be >= 1")
    if problem := part_problem(args.num_parts, args.part_id):
        parser.error(problem)
    if args.num_gpus < 1:
        parser.error("--num-gpus must be >= 1")
    if args.num_gpus > 1 and args.num_parts > 1:
        parser.error(
            "--num-gpus runs parts 0..G-1 of G itself; to split across machines as well, start "
            "one process per GPU with --num-parts/--part-id (docs/prediction.md)"
        )
    if args.best and args.spec is None:
        if args.work_dir is None:
            parser.error("--best needs -w/--work-dir")
        args.spec = args.work_dir / BEST_CONFIGURATION_FILE
    if args.spec is not None and (args.variant is not None or args.configuration is not None):
        parser.error("--spec/--best choose the model; leave out --variant and -c")
    if args.num_gpus > 1:
        parts_argv = list(sys.argv[1:] if argv is None else argv)
        return run(lambda: run_gpu_parts(parts_argv, args.num_gpus, args.device), args.verbose)
    options = PredictOptions(
        folds=args.folds,
        device=args.device,
        step_fraction=args.step_size,
        configuration=resolve_configuration(args.work_dir, args.configuration),
        variant=args.variant,
        tile_batch=args.tile_batch,
        use_tta=not (args.no_tta or args.fast),
        evidence=args.evidence or (DEFAULT_EVIDENCE if args.report else None),
        save_probabilities=args.save_probabilities,
        resume=args.resume,
        report_timing=args.verbose,
        checkpoint=args.checkpoint,
        num_parts=args.num_parts,
        part_id=args.part_id,
        report=args.report,
        output_formats=tuple(dict.fromkeys(args.output_format)),
        series=SeriesChoice.parse(args.series_uid),
        precision=args.precision,
    )
    reports: list[PredictionReport] = []

    def job() -> None:
        if args.spec is not None:
            spec = args.spec
            reports.append(predict_with_spec(args.input, args.output, args.work_dir, spec, options))
        else:
            reports.append(run_prediction(args.input, args.output, args.work_dir, options))

    code = run(job, args.verbose)
    if code == 0 and reports and not reports[0].ok:
        failed = sorted(f.case_id for f in reports[0].failures)
        print(
            f"error: {len(failed)} case(s) failed and were skipped ({', '.join(failed)}); "
            f"files and reasons in {args.output / FAILURES_CSV}",
            file=sys.stderr,
        )
        return EXIT_SOME_FAILED
    return code
