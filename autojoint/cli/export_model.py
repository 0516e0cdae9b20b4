"""``autojoint_export_model``: one trained variant of a work dir as a zip to share."""

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
from autojoint.sharing.export import ExportOptions, export_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="autojoint_export_model",
        description="Write one trained model of WORK_DIR (a variant, a configuration, its "
        "folds' checkpoints) as a zip with its plan, model card and a manifest of SHA-256 "
        "sums; autojoint_install_model installs it into a work dir anywhere "
        "(docs/model_sharing.md).",
    )
    add_work_dir(parser)
    parser.add_argument("-o", "--output", type=Path, required=True, help="the zip to write")
    add_variant(parser, "export")
    add_configuration(parser)
    add_fold_checkpoints(parser, "export")
    add_verbosity(parser)
    args = parser.parse_args(argv)
    if args.output.suffix != ".zip":
        parser.error(f"-o {args.output}: name the model file NAME.zip")
    options = ExportOptions(
        variant=args.variant,
        configuration=resolve_configuration(args.work_dir, args.configuration),
        folds=tuple(args.folds) if args.folds else None,
        checkpoint=args.checkpoint,
    )
    return run(lambda: export_model(args.work_dir, args.output, options), args.verbose)
