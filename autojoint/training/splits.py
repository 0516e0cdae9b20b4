"""Cross-validation splits, stratified by diagnosis so every fold sees every class, and the
cases of one fold."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from autojoint.io.files import read_json, write_json
from autojoint.io.workdir import SPLITS_FILE, preprocessed_dir
from autojoint.preprocessing.preprocess import list_preprocessed

NUM_FOLDS = 5


def make_splits(
    case_ids: Sequence[str],
    diagnoses: Sequence[str | None],
    *,
    num_folds: int = NUM_FOLDS,
    seed: int = 12345,
) -> list[dict[str, list[str]]]:
    """Deterministic stratified k-fold: cases of each diagnosis dealt round-robin to folds.

    Returns:
        one ``{"train": [...], "val": [...]}`` per fold; every case is in exactly one val.
    """
    if len(case_ids) < num_folds:
        raise ValueError(
            f"{len(case_ids)} cases cannot fill {num_folds} folds; train with FOLD 'all' "
            "or add cases."
        )
    rng = np.random.default_rng(seed)
    groups: dict[str, list[str]] = defaultdict(list)
    for c, d in zip(case_ids, diagnoses, strict=True):
        groups["" if d is None else d].append(c)
    val: list[list[str]] = [[] for _ in range(num_folds)]
    offset = 0
    for key in sorted(groups):
        members = sorted(groups[key])
        rng.shuffle(members)
        for i, c in enumerate(members):
            val[(i + offset) % num_folds].append(c)
        offset += len(members)
    all_ids = sorted(case_ids)
    return [{"train": [c for c in all_ids if c not in set(v)], "val": sorted(v)} for v in val]


def load_or_create_splits(
    path: Path, case_ids: Sequence[str], diagnoses: Sequence[str | None]
) -> list[dict[str, list[str]]]:
    """Reuse ``splits.json`` if present (so folds stay comparable), else create it."""
    if path.is_file():
        splits = read_json(path)
        known = set(case_ids)
        for i, s in enumerate(splits):
            missing = sorted((set(s["train"]) | set(s["val"])) - known)
            if missing:
                raise ValueError(
                    f"{path}: fold {i} names cases {missing[:5]} that are not preprocessed; "
                    "delete splits.json to recreate it."
                )
        return splits
    splits = make_splits(case_ids, diagnoses)
    write_json(splits, path)
    return splits


def fold_cases(
    work_dir: Path, fold: str, configuration: str = "fullres"
) -> tuple[list[str], list[str]]:
    """Train and validation case ids of ``fold`` ('0'..'4' or 'all')."""
    pre = preprocessed_dir(work_dir, configuration)
    ids = list_preprocessed(pre)
    if not ids:
        raise FileNotFoundError(f"{pre}: no preprocessed cases; run autojoint_plan first.")
    if fold == "all":
        return ids, []
    if not fold.isdigit() or not 0 <= int(fold) < NUM_FOLDS:
        raise ValueError(f"fold must be 0..{NUM_FOLDS - 1} or 'all', got '{fold}'.")
    diagnoses = [read_json(pre / f"{c}.json")["diagnosis"] for c in ids]
    split = load_or_create_splits(Path(work_dir) / SPLITS_FILE, ids, diagnoses)[int(fold)]
    return split["train"], split["val"]
