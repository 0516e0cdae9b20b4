"""Shared CLI plumbing: logging set-up and the work-directory default."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from autojoint.io.workdir import PLANS_FILE
from autojoint.planning.presets import PRESETS, preset_overrides
from autojoint.planning.schema import CONFIGURATIONS
from autojoint.runtime.allocator import allow_memory_reuse, user_tuned_malloc
from autojoint.runtime.checkpoint import CHECKPOINTS, FINAL_CHECKPOINT

WORK_DIR_ENV = "AUTOJOINT_WORK"
# Set (to anything but empty) to leave glibc's malloc as it is (runtime/allocator.py).
SYSTEM_MALLOC_ENV = "AUTOJOINT_SYSTEM_MALLOC"

# Exit codes of every command (docs/cli.md, docs/robustness.md).
EXIT_OK = 0
EXIT_ERROR = 1  # an input, plan, checkpoint or work file is unusable (message names it)
EXIT_USAGE = 2  # bad command line (argparse's own code)
EXIT_DATASET = 3  # the raw dataset has problems (all listed)
EXIT_ENVIRONMENT = 4  # not writable, disk full, out of memory
EXIT_INTERNAL = 5  # an unexpected error: a bug; -v shows the traceback
EXIT_SOME_FAILED = 6  # autojoint_predict: some cases failed (in failures.csv), others written
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)

# OSError numbers that describe the machine, not the input.
_ENVIRONMENT_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}


def add_work_dir(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    default = os.environ.get(WORK_DIR_ENV)
    parser.add_argument(
        "-w",
        "--work-dir",
        type=Path,
        default=Path(default) if default else None,
        required=required and default is None,
        help=f"work directory holding plans, preprocessed data and folds "
        f"(default: ${WORK_DIR_ENV}{' = ' + default if default else ', unset'})",
    )


def add_plan_overrides(parser: argparse.ArgumentParser, *, preset_help: str, set_help: str) -> None:
    """``--preset NAME`` and repeatable ``--set SECTION.FIELD=VALUE`` (autojoint_plan and
    autojoint_train take the same items); read them back with :func:`plan_overrides`."""
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default", help=preset_help)
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help=set_help,
    )


def add_configuration(parser: argparse.ArgumentParser, extra_help: str = "") -> None:
    """``-c/--configuration``; None until :func:`resolve_configuration` reads the plan."""
    parser.add_argument(
        "-c",
        "--configuration",
        choices=CONFIGURATIONS,
        default=None,
        help="fullres, lowres or 2d (default: the plan's own, fullres for a dataset of volumes "
        "and 2d for a dataset of 2D images)" + extra_help,
    )


def add_variant(parser: argparse.ArgumentParser, use: str) -> None:
    """``--variant NAME``: which trained variant to ``use`` (None: the default variant)."""
    parser.add_argument(
        "--variant",
        default=None,
        metavar="NAME",
        help=f"the trained variant to {use} (as autojoint_train named it; default: the "
        "default variant, WORK_DIR/fold_FOLD)",
    )


def add_fold_checkpoints(parser: argparse.ArgumentParser, use: str) -> None:
    """``-f/--folds`` and ``-chk/--checkpoint``: which folds' checkpoints to ``use``."""
    parser.add_argument(
        "-f",
        "--folds",
        nargs="+",
        default=None,
        help=f"folds to {use} (default: every fold with the chosen checkpoint)",
    )
    parser.add_argument(
        "-chk",
        "--checkpoint",
        choices=CHECKPOINTS,
        default=FINAL_CHECKPOINT,
        help="which checkpoint of each fold: checkpoint_final.pt (default, end of training), "
        "checkpoint_best.pt (best smoothed validation score during training) or "
        "checkpoint_latest.pt",
    )


def resolve_configuration(work_dir: Path | None, name: str | None) -> str:
    """``name``, or the top-level configuration of ``WORK/plans.json`` (``fullres`` when
    there is no readable plan: the command then reports the missing plan itself)."""
    if name is not None:
        return name
    if work_dir is None:
        return "fullres"
    try:
        plan = json.loads((Path(work_dir) / PLANS_FILE).read_text(encoding="utf-8"))
        found = plan.get("configuration", "fullres") if isinstance(plan, dict) else "fullres"
    except (OSError, ValueError):
        return "fullres"
    return found if found in CONFIGURATIONS else "fullres"


def plan_overrides(args: argparse.Namespace) -> tuple[str, ...]:
    """The preset's items followed by the ``--set`` items (so those win)."""
    return preset_overrides(args.preset) + tuple(args.overrides)


def add_verbosity(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def exit_code_for(err: BaseException) -> int:
    """The documented exit code for an error raised by a command's job."""
    from autojoint.io.dataset import DatasetError
    from autojoint.io.verify import DatasetProblems, EnvironmentProblem

    if isinstance(err, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(err, DatasetProblems | DatasetError):
        return EXIT_DATASET
    if isinstance(err, EnvironmentProblem | MemoryError):
        return EXIT_ENVIRONMENT
    if isinstance(err, OSError) and err.errno in _ENVIRONMENT_ERRNOS:
        return EXIT_ENVIRONMENT
    if isinstance(err, ValueError | FileNotFoundError | RuntimeError | OSError):
        return EXIT_ERROR
    return EXIT_INTERNAL


def configure_malloc() -> None:
    """The sliding window reuses freed memory (``runtime.allocator``) unless the user opted
    out with ``AUTOJOINT_SYSTEM_MALLOC`` or tuned malloc themselves."""
    reason = SYSTEM_MALLOC_ENV if os.environ.get(SYSTEM_MALLOC_ENV) else None
    reason = reason or user_tuned_malloc(os.environ)
    if reason:
        logging.getLogger(__name__).debug("malloc left as it is (%s is set)", reason)
    allow_memory_reuse(reason is None)


def run(job: Callable[[], object], verbose: bool) -> int:
    """Configure logging and malloc (:func:`configure_malloc`), run ``job``; errors become clear
    lines and a documented exit code (no traceback unless ``verbose``). A job may return an
    ``int`` exit code itself."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    configure_malloc()
    try:
        result = job()
    except KeyboardInterrupt:
        print("interrupted: finished files are complete; rerun to continue.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:
        if verbose:
            raise
        code = exit_code_for(err)
        if code == EXIT_INTERNAL:
            print(
                f"internal error: {type(err).__name__}: {err}. This is a bug: rerun with -v "
                "for the traceback and report it.",
                file=sys.stderr,
            )
        else:
            print(f"error: {err}", file=sys.stderr)
        return code
    return result if isinstance(result, int) and not isinstance(result, bool) else EXIT_OK
