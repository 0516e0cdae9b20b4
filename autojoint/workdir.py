"""Names of the files and folders inside a work directory (one place, one contract)."""

from __future__ import annotations

from pathlib import Path

FINGERPRINT_FILE = "fingerprint.json"
PLANS_FILE = "plans.json"
PREPROCESSED_DIR = "preprocessed"
SPLITS_FILE = "splits.json"


def fold_dir(work_dir: Path, fold: str) -> Path:
    """``WORK/fold_FOLD``: checkpoints and the training log of one fold."""
    return Path(work_dir) / f"fold_{fold}"
