"""Trained variants of a work directory: their names, their folders and ``variants.json``.

A variant is one recipe trained on the work dir's plan: the plan as planned (the default
variant, in the folders of every earlier version) or the plan with a preset and ``--set``
items (``WORK/variants/NAME/CONFIGURATION/fold_X``; naming rule in
``autojoint.planning.variants``). Folders never move, so a variant is found by its folder;
``variants.json`` records what made each one (preset, overrides, folds, time), for people
and for tools that ship models.

Which variants exist is read from the folders (a fold counts once it holds a checkpoint),
not from the index: a work dir of an earlier version has no index, and a copied or
hand-pruned work dir must still resolve what it holds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from autojoint.io.files import read_json, write_json
from autojoint.io.typed_json import field_problems, from_json
from autojoint.io.workdir import DEFAULT_VARIANT, VARIANTS_DIR, VARIANTS_FILE, variant_dir

VARIANTS_SCHEMA_VERSION = 1
# Letters, digits and . _ , = + - : a folder name on every file system, and no shell
# quoting for ``--variant NAME`` beyond what ``=`` and ``,`` already need (none).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._,=+-]*")
_UNSAFE = re.compile(r"[^A-Za-z0-9._,=+-]")
MAX_NAME_LENGTH = 100
# A derived name longer than this keeps this many readable characters plus a hash.
_READABLE_LENGTH = 64
_HASH_LENGTH = 8
# Trained folds: fold folders holding any of the trainer's checkpoints (checkpoint_*.pt).
_TRAINED_FOLD_GLOB = "fold_*/checkpoint_*.pt"
_FINAL_CHECKPOINT_GLOB = "fold_*/checkpoint_final.pt"


def variant_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a variant (``--variant``), or None when it can."""
    if len(name) > MAX_NAME_LENGTH or not _NAME.fullmatch(name):
        return (
            f"--variant {name!r}: use at most {MAX_NAME_LENGTH} letters, digits and . _ , = + - "
            "(starting with a letter or digit), e.g. --variant msd-net-long"
        )
    return None


def safe_variant_name(text: str) -> str:
    """``text`` as a folder name: unchanged when it already is a short safe name; otherwise
    its safe characters (others become ``_``), shortened, plus ``-`` and 8 hex digits of
    its SHA-256, so two different texts never share a folder."""
    if len(text) <= MAX_NAME_LENGTH and _NAME.fullmatch(text):
        return text
    readable = _UNSAFE.sub("_", text)[:_READABLE_LENGTH].rstrip("._,=+-") or "variant"
    if not readable[0].isalnum():
        readable = "v" + readable
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:_HASH_LENGTH]
    return f"{readable}-{digest}"


@dataclass(frozen=True)
class VariantRecord:
    """One trained variant of one configuration in ``variants.json``.

    Attributes:
        name: the variant (``default``, a derived name such as ``msd-net``, or
            ``--variant NAME``).
        configuration: ``fullres``, ``lowres`` or ``2d``.
        preset: the preset its overrides start with (``default``: none).
        overrides: the ``--set`` items after the preset's, as given.
        folder: its folds' folder, relative to the work dir (``.`` for the default
            full-resolution variant).
        folds: folds holding ``checkpoint_final.pt`` when the index was last written.
        created: when it was first trained (ISO 8601, UTC).
    """

    name: str
    configuration: str
    preset: str
    overrides: tuple[str, ...]
    folder: str
    folds: tuple[str, ...]
    created: str


@dataclass(frozen=True)
class VariantIndex:
    """``WORK/variants.json``: one record per (variant, configuration) trained."""

    variants: tuple[VariantRecord, ...] = ()
    schema_version: int = VARIANTS_SCHEMA_VERSION

    def find(self, name: str, configuration: str) -> VariantRecord | None:
        """The record of variant ``name`` in ``configuration``, or None."""
        for record in self.variants:
            if record.name == name and record.configuration == configuration:
                return record
        return None

    def with_record(self, record: VariantRecord) -> VariantIndex:
        """This index with ``record`` added, or replacing the one of its name and
        configuration (in place, so the file's order is the order of first training)."""
        key = (record.name, record.configuration)
        kept = [r if (r.name, r.configuration) != key else record for r in self.variants]
        if self.find(record.name, record.configuration) is None:
            kept.append(record)
        return dataclasses.replace(self, variants=tuple(kept))


def read_variant_index(work_dir: Path) -> VariantIndex:
    """``WORK/variants.json``; an empty index when there is none (a work dir trained by an
    earlier version, or not trained yet).

    Raises:
        ValueError: the file is not valid JSON, of another schema version, or malformed
            (every bad key named).
    """
    path = Path(work_dir) / VARIANTS_FILE
    if not path.is_file():
        return VariantIndex()
    data = read_json(path)
    fix = "delete it: the next autojoint_train writes a new one (the folders stay as they are)"
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version != VARIANTS_SCHEMA_VERSION:
        raise ValueError(
            f"{path}: schema_version {version} is not supported (expected "
            f"{VARIANTS_SCHEMA_VERSION}); {fix}."
        )
    problems = field_problems(VariantIndex, data)
    if problems:
        raise ValueError(f"{path}: {'; '.join(problems)}; {fix}.")
    return from_json(VariantIndex, data)


def write_variant_index(work_dir: Path, index: VariantIndex) -> Path:
    """Write ``WORK/variants.json`` atomically (temp file, then rename); returns its path."""
    path = Path(work_dir) / VARIANTS_FILE
    write_json(dataclasses.asdict(index), path)
    return path


def final_folds(folder: Path) -> tuple[str, ...]:
    """Folds in ``folder`` holding ``checkpoint_final.pt`` (trained to the end), sorted."""
    found = Path(folder).glob(_FINAL_CHECKPOINT_GLOB)
    return tuple(sorted(p.parent.name.removeprefix("fold_") for p in found))


def has_trained_folds(folder: Path) -> bool:
    """Whether a fold folder in ``folder`` holds any of the trainer's checkpoints."""
    return any(Path(folder).glob(_TRAINED_FOLD_GLOB))


def trained_variants(work_dir: Path, configuration: str = "fullres") -> list[str]:
    """Variants with a trained fold of ``configuration``: ``default`` first, then the
    others by name."""
    default = variant_dir(work_dir, DEFAULT_VARIANT, configuration)
    out = [DEFAULT_VARIANT] if has_trained_folds(default) else []
    root = Path(work_dir) / VARIANTS_DIR
    if root.is_dir():
        out += sorted(
            p.name
            for p in root.iterdir()
            if p.name != DEFAULT_VARIANT and has_trained_folds(p / configuration)
        )
    return out


def resolve_variant(work_dir: Path, name: str | None, configuration: str = "fullres") -> Path:
    """The folder of the folds of variant ``name`` (None: the default variant), for
    prediction and for shipping a model.

    With no name the default variant is used, also when it is not trained (the caller then
    says no fold was found) unless other variants are: then no variant is guessed, since
    the same command would silently change model once the default is trained later.

    Raises:
        FileNotFoundError: ``name`` has no trained fold of ``configuration``, or no name
            was given and only other variants are trained (the message lists them).
        ValueError: ``name`` is not a valid variant name.
    """
    available = trained_variants(work_dir, configuration)
    listed = ", ".join(available) or "none"
    if name is None:
        if available and DEFAULT_VARIANT not in available:
            raise FileNotFoundError(
                f"{work_dir}: the default variant has no trained fold of configuration "
                f"{configuration}; trained variants: {listed}. Pass --variant NAME "
                '(docs/training.md, "Variants").'
            )
        return variant_dir(work_dir, DEFAULT_VARIANT, configuration)
    if problem := variant_name_problem(name):
        raise ValueError(problem)
    folder = variant_dir(work_dir, name, configuration)
    if name != DEFAULT_VARIANT and name not in available:
        raise FileNotFoundError(
            f"{folder}: variant '{name}' has no trained fold of configuration "
            f"{configuration}; trained variants: {listed}."
        )
    return folder
