"""Shared CLI plumbing: logging set-up and the work-directory default."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

WORK_DIR_ENV = "AUTOJOINT_WORK"


def add_work_dir(parser: argparse.ArgumentParser) -> None:
    default = os.environ.get(WORK_DIR_ENV)
    parser.add_argument(
        "-w",
        "--work-dir",
        type=Path,
        default=Path(default) if default else None,
        required=default is None,
        help=f"work directory holding plans, preprocessed data and folds "
        f"(default: ${WORK_DIR_ENV}{' = ' + default if default else ', unset'})",
    )


def add_verbosity(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def run(job: Callable[[], object], verbose: bool) -> int:
    """Configure logging, run ``job``; expected errors become one clear line and exit 1."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        job()
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as err:
        if verbose:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
