"""Versioned JSON records of the model-selection stage (``calibration.json``,
``best_configuration.json``): one reader that checks the schema version and every field
before a frozen dataclass is built, so a hand-edited file fails with its name and a fix."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, TypeVar

from autojoint.io.files import read_json, write_json
from autojoint.io.typed_json import field_problems, from_json

T = TypeVar("T")


def read_versioned(path: Path, cls: type[T], version: int, fix: str) -> T:
    """``path`` as a ``cls`` of ``schema_version`` ``version``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not JSON, another schema version, or malformed (every bad key named);
            the message ends with ``fix``.
    """
    data = read_json(path)
    found = data.get("schema_version") if isinstance(data, dict) else None
    if found != version:
        raise ValueError(
            f"{path}: schema_version {found} is not supported (expected {version}); {fix}."
        )
    problems = field_problems(cls, data, null_floats=True)
    if problems:
        raise ValueError(f"{path}: {'; '.join(problems)}; {fix}.")
    return from_json(cls, data, null_floats=True)


def write_record(record: Any, path: Path) -> Path:
    """Write a dataclass record as strict JSON, atomically; returns ``path``."""
    write_json(dataclasses.asdict(record), path)
    return Path(path)
