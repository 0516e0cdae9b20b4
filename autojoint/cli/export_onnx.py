"""``autojoint_export_onnx``: a model's networks as ONNX graphs plus a preprocessing spec."""

from __future__ import annotations

import argparse
from pathlib import Path

from autojoint.cli.common import (
    add_configuration,
    add_fold_checkpoints,
    add_variant,
    add_verbosity,
    add_work_dir,
    resolve_configuration,
    run,
)
from autojoint.inference.predict_options import PredictOptions
from autojoint.sharing.onnx_export import export_onnx


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="autojoint_export_onnx",
        description="Write each fold's segmentation tile network and diagnosis head as ONNX "
        "(dynamic batch axis, checked against torch with onnxruntime) and preprocessing.json "
        "(spacing, normalisation, patch, view, transpose, fusion, labels, classes) into "
        "OUTPUT_DIR, for another runtime. Needs the 'export' extra (docs/model_sharing.md).",
    )
    add_work_dir(parser)
    parser.add_argument(
        "-o", "--output", type=Path, required=True, help="a new folder for the ONNX files"
    )
    add_variant(parser, "export")
    add_configuration(parser)
    add_fold_checkpoints(parser, "export")
    add_verbosity(parser)
    args = parser.parse_args(argv)
    options = PredictOptions(
        folds=args.folds,
        configuration=resolve_configuration(args.work_dir, args.configuration),
        checkpoint=args.checkpoint,
        variant=args.variant,
    )
    return run(lambda: export_onnx(args.work_dir, args.output, options), args.verbose)
