"""Atomic file writing: a crash never leaves a half-written plan, checkpoint or CSV.

A writer killed mid-way (even by ``kill -9``) leaves at most a hidden ``.tmp_*`` file whose
name ends in ``.part``, so no reader's ``*.npz`` / ``*.json`` / ``*.pt`` pattern picks it up
as complete; :func:`remove_stale_temp_files` clears such leftovers before a stage reruns.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

logger = logging.getLogger(__name__)

TEMP_PREFIX = ".tmp_"
# mkstemp creates files readable by the owner only; a finished file gets the permissions a
# plain open() would give it (0o666 minus the umask), so colleagues can read plans, masks
# and reports as with any other tool. Read once: os.umask can only be read by setting it.
_UMASK = os.umask(0o022)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK
DIR_MODE = 0o777 & ~_UMASK  # for folders made by mkdtemp (0o700) and renamed into place


def atomic_write(path: Path, write: Callable[[IO[Any]], object], *, binary: bool = False) -> None:
    """Call ``write(fh)`` on a temp file beside ``path``, then rename it over ``path``.

    The temp name ends in ``.part`` (not ``path``'s suffix): a leftover of a killed process
    never matches the glob a reader uses to find complete files.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=path.suffix + ".part", dir=path.parent)
    try:
        fh: IO[Any]
        with (
            os.fdopen(fd, "wb")
            if binary
            else os.fdopen(fd, "w", newline="", encoding="utf-8") as fh
        ):
            write(fh)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temp_files(folder: Path, *, min_age_seconds: float = 0.0) -> int:
    """Delete ``.tmp_*`` leftovers of killed writers in ``folder``; returns how many.

    Call only when no other process writes into ``folder`` (e.g. before a stage starts),
    or, when others may be writing (the parts of a split prediction), with
    ``min_age_seconds``: only temp files untouched for that long are removed, so a
    running writer's temp file is left alone.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    now = time.time()
    stale = [
        p
        for p in folder.iterdir()
        if p.name.startswith(TEMP_PREFIX) and _age_seconds(p, now) >= min_age_seconds
    ]
    for p in stale:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    if stale:
        logger.info("removed %d temp files left by an interrupted run in %s", len(stale), folder)
    return len(stale)


def _age_seconds(path: Path, now: float) -> float:
    """Seconds since ``path`` was last modified (infinite if it vanished meanwhile)."""
    try:
        return now - path.lstat().st_mtime
    except FileNotFoundError:
        return math.inf


def _jsonable(obj: Any) -> Any:
    """Replace NaN/inf by None so the file is strict JSON other tools can parse."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    return obj


def json_text(obj: Any) -> str:
    """The text :func:`write_json` writes: strict JSON (NaN becomes null), indented."""
    return json.dumps(_jsonable(obj), indent=2, allow_nan=False) + "\n"


def write_json(obj: Any, path: Path) -> None:
    """Write strict JSON atomically (NaN becomes null)."""
    text = json_text(obj)
    atomic_write(path, lambda fh: fh.write(text))


def read_json(path: Path) -> Any:
    """Read JSON, naming the file when it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: is not UTF-8 text ({err}). Save it as UTF-8.") from err
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: is not valid JSON ({err}). Fix or regenerate it.") from err
