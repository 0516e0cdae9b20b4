"""Stratified cross-validation splits."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from autojoint.training.splits import NUM_FOLDS, load_or_create_splits, make_splits

CLASSES = ["COVID-19", "CAP", "normal"]


def _cases(n: int, *, with_none: int = 0) -> tuple[list[str], list[str | None]]:
    ids = [f"case_{i:03d}" for i in range(n)]
    diags: list[str | None] = [CLASSES[i % 3] for i in range(n)]
    for i in range(with_none):
        diags[i] = None
    return ids, diags


@pytest.mark.parametrize("n,num_folds", [(5, 5), (23, 5), (30, 5), (12, 3)])
def test_every_case_in_exactly_one_val_fold(n: int, num_folds: int) -> None:
    ids, diags = _cases(n, with_none=2)
    splits = make_splits(ids, diags, num_folds=num_folds)
    assert len(splits) == num_folds
    vals = [c for s in splits for c in s["val"]]
    assert sorted(vals) == sorted(ids)
    assert len(vals) == len(set(vals))
    for s in splits:
        assert set(s["train"]).isdisjoint(s["val"])
        assert sorted(s["train"] + s["val"]) == sorted(ids)
        assert s["train"] == sorted(s["train"]) and s["val"] == sorted(s["val"])
    sizes = [len(s["val"]) for s in splits]
    assert max(sizes) - min(sizes) <= 1  # balanced fold sizes


def test_each_class_is_spread_over_the_folds() -> None:
    ids, diags = _cases(31)
    splits = make_splits(ids, diags)
    diag_of = dict(zip(ids, diags, strict=True))
    total = Counter(diags)
    for cls in CLASSES:
        per_fold = [sum(diag_of[c] == cls for c in s["val"]) for s in splits]
        # Round-robin dealing: each fold gets floor or ceil of its share.
        assert sum(per_fold) == total[cls]
        assert max(per_fold) - min(per_fold) <= 1, (cls, per_fold)
        assert min(per_fold) >= total[cls] // NUM_FOLDS


def test_small_class_lands_in_different_folds() -> None:
    ids = [f"c{i}" for i in range(12)]
    diags = ["rare"] * 3 + ["common"] * 9
    splits = make_splits(ids, diags)
    folds_with_rare = [i for i, s in enumerate(splits) if any(c in s["val"] for c in ids[:3])]
    assert len(folds_with_rare) == 3


def test_splits_are_deterministic_for_a_seed() -> None:
    ids, diags = _cases(20)
    a = make_splits(ids, diags, seed=7)
    assert make_splits(list(reversed(ids)), list(reversed(diags)), seed=7) == a
    assert make_splits(ids, diags, seed=7) == a
    assert make_splits(ids, diags, seed=8) != a


def test_too_few_cases() -> None:
    ids, diags = _cases(4)
    with pytest.raises(ValueError, match="4 cases cannot fill 5 folds"):
        make_splits(ids, diags)
    assert len(make_splits(ids, diags, num_folds=4)) == 4


def test_load_or_create_reuses_the_file(tmp_path: Path) -> None:
    path = tmp_path / "splits.json"
    ids, diags = _cases(10)
    created = load_or_create_splits(path, ids, diags)
    assert path.is_file()
    assert json.loads(path.read_text(encoding="utf-8")) == created
    assert created == make_splits(ids, diags)

    # A hand-edited file is kept as is, even if it differs from what make_splits would give.
    custom = [{"train": ids[2:], "val": ids[:2]}, {"train": ids[:2], "val": ids[2:]}]
    path.write_text(json.dumps(custom), encoding="utf-8")
    assert load_or_create_splits(path, ids, diags) == custom
    # More cases than the file names is fine: the file still wins.
    assert load_or_create_splits(path, [*ids, "case_new"], [*diags, "CAP"]) == custom


def test_load_or_create_refuses_unknown_cases(tmp_path: Path) -> None:
    path = tmp_path / "splits.json"
    ids, diags = _cases(10)
    load_or_create_splits(path, ids, diags)
    with pytest.raises(ValueError, match=r"splits.json: fold \d names cases \['case_009'\]"):
        load_or_create_splits(path, ids[:9], diags[:9])
