"""Names of the files and folders inside a work directory (one place, one contract).

Trained models are grouped into variants (docs/training.md, "Variants"): the default
variant (the plan as planned) keeps the folders ``WORK/fold_X``, ``WORK/lowres/fold_X``,
``WORK/2d/fold_X``; any other variant lives in ``WORK/variants/NAME/CONFIGURATION/fold_X``,
so training one never overwrites another.
"""

from __future__ import annotations

from pathlib import Path

FINGERPRINT_FILE = "fingerprint.json"
PLANS_FILE = "plans.json"
PREPROCESSED_DIR = "preprocessed"
SPLITS_FILE = "splits.json"
VARIANTS_FILE = "variants.json"  # the index of trained variants (autojoint/io/variants.py)
VARIANTS_DIR = "variants"
DEFAULT_VARIANT = "default"


def configuration_dir(work_dir: Path, configuration: str = "fullres") -> Path:
    """Where a configuration's folds live: ``WORK`` (full resolution) or ``WORK/lowres``,
    ``WORK/2d``."""
    return Path(work_dir) if configuration == "fullres" else Path(work_dir) / configuration


def variant_dir(
    work_dir: Path, variant: str = DEFAULT_VARIANT, configuration: str = "fullres"
) -> Path:
    """Where a variant's folds of a configuration live: :func:`configuration_dir` for the
    default variant (the folders of every earlier version), else
    ``WORK/variants/VARIANT/CONFIGURATION``."""
    if variant == DEFAULT_VARIANT:
        return configuration_dir(work_dir, configuration)
    return Path(work_dir) / VARIANTS_DIR / variant / configuration


def fold_dir(
    work_dir: Path, fold: str, configuration: str = "fullres", variant: str = DEFAULT_VARIANT
) -> Path:
    """``WORK/fold_FOLD`` (full resolution) or ``WORK/lowres/fold_FOLD`` (of a variant other
    than the default: ``WORK/variants/VARIANT/CONFIGURATION/fold_FOLD``): checkpoints and
    the training log of one fold."""
    return variant_dir(work_dir, variant, configuration) / f"fold_{fold}"


def preprocessed_dir(work_dir: Path, configuration: str = "fullres") -> Path:
    """``WORK/preprocessed`` (full resolution) or ``WORK/preprocessed_lowres``,
    ``WORK/preprocessed_2d``."""
    suffix = "" if configuration == "fullres" else f"_{configuration}"
    return Path(work_dir) / f"{PREPROCESSED_DIR}{suffix}"
