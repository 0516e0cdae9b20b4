"""Names of the files and folders inside a work directory (one place, one contract)."""

from __future__ import annotations

from pathlib import Path

FINGERPRINT_FILE = "fingerprint.json"
PLANS_FILE = "plans.json"
PREPROCESSED_DIR = "preprocessed"
SPLITS_FILE = "splits.json"


def configuration_dir(work_dir: Path, configuration: str = "fullres") -> Path:
    """Where a configuration's folds live: ``WORK`` (full resolution) or ``WORK/lowres``,
    ``WORK/2d``."""
    return Path(work_dir) if configuration == "fullres" else Path(work_dir) / configuration


def fold_dir(work_dir: Path, fold: str, configuration: str = "fullres") -> Path:
    """``WORK/fold_FOLD`` (full resolution) or ``WORK/lowres/fold_FOLD``: checkpoints and
    the training log of one fold."""
    return configuration_dir(work_dir, configuration) / f"fold_{fold}"


def preprocessed_dir(work_dir: Path, configuration: str = "fullres") -> Path:
    """``WORK/preprocessed`` (full resolution) or ``WORK/preprocessed_lowres``,
    ``WORK/preprocessed_2d``."""
    suffix = "" if configuration == "fullres" else f"_{configuration}"
    return Path(work_dir) / f"{PREPROCESSED_DIR}{suffix}"
