"""``autojoint_install_model``: a shared model zip into a work directory, checked first."""

from __future__ import annotations

import argparse
from pathlib import Path

from autojoint.cli.common import add_verbosity, add_work_dir, run
from autojoint.sharing.install import install_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="autojoint_install_model",
        description="Install MODEL_ZIP (from autojoint_export_model) into WORK_DIR, which then "
        "predicts as the work dir it came from (autojoint_predict -w WORK_DIR). Refused: "
        "member paths leaving WORK_DIR or symlinks, files that differ from the zip's manifest, "
        "checkpoints that do not load with torch.load(weights_only=True), and a WORK_DIR "
        "holding a different model (docs/model_sharing.md).",
    )
    parser.add_argument("model_zip", type=Path, metavar="MODEL_ZIP", help="the model zip")
    add_work_dir(parser)
    add_verbosity(parser)
    args = parser.parse_args(argv)
    return run(lambda: install_model(args.model_zip, args.work_dir), args.verbose)
