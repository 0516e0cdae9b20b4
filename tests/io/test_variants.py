"""Variant folders, names and the ``variants.json`` index: safe names, an exact round trip,
and which folder prediction resolves (old work dirs without an index included)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autojoint.io.variants import (
    VariantIndex,
    VariantRecord,
    final_folds,
    read_variant_index,
    resolve_variant,
    safe_variant_name,
    trained_variants,
    variant_name_problem,
    write_variant_index,
)
from autojoint.io.workdir import VARIANTS_FILE, fold_dir, variant_dir


def _fake_fold(
    work: Path, fold: str, configuration: str = "fullres", variant: str = "default"
) -> None:
    """A fold folder as the trainer leaves it (the file's content does not matter here)."""
    path = fold_dir(work, fold, configuration, variant) / "checkpoint_final.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not read")


def test_default_variant_keeps_the_folders_of_earlier_versions(tmp_path: Path) -> None:
    assert fold_dir(tmp_path, "0") == tmp_path / "fold_0"
    assert fold_dir(tmp_path, "0", "lowres") == tmp_path / "lowres" / "fold_0"
    assert fold_dir(tmp_path, "all", "2d") == tmp_path / "2d" / "fold_all"
    assert variant_dir(tmp_path, "msd-net", "fullres") == tmp_path / "variants/msd-net/fullres"
    assert fold_dir(tmp_path, "1", "2d", "x") == tmp_path / "variants/x/2d/fold_1"


@pytest.mark.parametrize("name", ["msd-net", "default+loss.batch_dice=true", "a,b=0.5", "R2"])
def test_safe_names_stay_as_they_are(name: str) -> None:
    assert variant_name_problem(name) is None
    assert safe_variant_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "../up", "a/b", ".hidden", "-flag", "with space", "x" * 101, "a:b"]
)
def test_unsafe_names_are_refused_and_derived_ones_made_safe(name: str) -> None:
    assert variant_name_problem(name) is not None
    safe = safe_variant_name(name)
    assert variant_name_problem(safe) is None
    assert len(safe) <= 73  # 64 readable characters, "-", 8 hex digits


def test_made_safe_names_keep_different_texts_apart() -> None:
    texts = ["a b", "a_b", "a:b", "x" * 200, "x" * 199 + "y"]
    names = [safe_variant_name(t) for t in texts]
    assert len(set(names)) == len(texts)
    assert names[0].startswith("a_b-") and names[1] == "a_b"


def test_index_round_trip_is_exact_and_atomic(tmp_path: Path) -> None:
    assert read_variant_index(tmp_path) == VariantIndex()  # no file: nothing recorded
    index = VariantIndex().with_record(
        VariantRecord("default", "fullres", "default", (), ".", ("0", "1"), "2025-01-02T03:04:05")
    )
    index = index.with_record(
        VariantRecord(
            "msd-net+loss.focal_gamma=3",
            "2d",
            "msd-net",
            ("loss.focal_gamma=3",),
            "variants/msd-net+loss.focal_gamma=3/2d",
            ("all",),
            "2025-01-02T03:04:06",
        )
    )
    path = write_variant_index(tmp_path, index)
    assert path == tmp_path / VARIANTS_FILE
    assert [p.name for p in tmp_path.iterdir()] == [VARIANTS_FILE]  # no temp file left
    assert json.loads(path.read_text(encoding="utf-8"))["schema_version"] == 1
    assert read_variant_index(tmp_path) == index
    # Refreshing a record replaces it in place.
    again = index.with_record(
        VariantRecord("default", "fullres", "default", (), ".", ("0", "1", "2"), "t")
    )
    assert [r.name for r in again.variants] == [r.name for r in index.variants]
    assert again.find("default", "fullres").folds == ("0", "1", "2")  # type: ignore[union-attr]
    assert again.find("default", "2d") is None


@pytest.mark.parametrize(
    "content, message",
    [
        ("{", "not valid JSON"),
        ('{"schema_version": 2, "variants": []}', "schema_version 2"),
        ('{"schema_version": 1, "variants": [{"name": 3}]}', r"variants\[0\]\.name. must be"),
    ],
)
def test_a_bad_index_names_the_file_and_the_fix(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / VARIANTS_FILE).write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message) as err:
        read_variant_index(tmp_path)
    assert VARIANTS_FILE in str(err.value)


def test_old_work_dir_without_index_resolves_its_default_folds(tmp_path: Path) -> None:
    _fake_fold(tmp_path, "0")
    _fake_fold(tmp_path, "all", "lowres")
    assert resolve_variant(tmp_path, None) == tmp_path
    assert resolve_variant(tmp_path, "default") == tmp_path
    assert resolve_variant(tmp_path, None, "lowres") == tmp_path / "lowres"
    assert trained_variants(tmp_path) == ["default"]
    assert final_folds(tmp_path) == ("0",)
    assert not (tmp_path / VARIANTS_FILE).exists()  # resolving writes nothing


def test_named_variants_resolve_and_unknown_ones_are_listed(tmp_path: Path) -> None:
    _fake_fold(tmp_path, "0")
    _fake_fold(tmp_path, "0", variant="msd-net")
    _fake_fold(tmp_path, "all", "2d", variant="b")
    assert trained_variants(tmp_path) == ["default", "msd-net"]
    assert trained_variants(tmp_path, "2d") == ["b"]
    assert resolve_variant(tmp_path, "msd-net") == tmp_path / "variants/msd-net/fullres"
    with pytest.raises(FileNotFoundError, match="trained variants: default, msd-net"):
        resolve_variant(tmp_path, "b")  # b has only a 2d configuration
    with pytest.raises(ValueError, match="--variant"):
        resolve_variant(tmp_path, "../msd-net")


def test_no_name_never_guesses_another_variant(tmp_path: Path) -> None:
    """Only another variant trained: refuse (naming it) rather than pick it, so a command
    does not switch model once the default is trained later."""
    assert resolve_variant(tmp_path, None) == tmp_path  # nothing trained: the caller says so
    _fake_fold(tmp_path, "0", variant="msd-net")
    with pytest.raises(FileNotFoundError, match="trained variants: msd-net. Pass --variant"):
        resolve_variant(tmp_path, None)
    _fake_fold(tmp_path, "0")
    assert resolve_variant(tmp_path, None) == tmp_path
