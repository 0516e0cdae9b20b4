"""Path safety: case names never escape their folder, outputs never overwrite inputs.

Case names come from file names, CSV rows and (in converters) DICOM folder names or tags,
and every stage turns them into file names (``preprocessed/CASE.npz``, ``OUT/CASE.nii.gz``).
A name such as ``../x`` or ``a/b`` would write outside the folder the user chose, so such
names are refused, not silently rewritten: a renamed case would no longer match its
diagnosis row or reference mask.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

# Characters a case name may not hold: path separators of any OS, NUL and control codes.
_FORBIDDEN = re.compile(r"[/\\\x00-\x1f\x7f]")


class UnsafePathError(ValueError):
    """A case name or an output location would write where it must not."""


def case_name_problem(case_id: str) -> str | None:
    """Why ``case_id`` cannot name files, or None when it is safe.

    Safe means: non-empty, no path separator (``/`` or ``\\``), no control character, not
    ``.``/``..``, no leading dot (hidden files are skipped by every reader and ``.tmp_``
    names are the atomic writers' temp files) and no leading/trailing blank.
    """
    if not case_id:
        return "is empty"
    if _FORBIDDEN.search(case_id):
        return "contains a path separator or a control character"
    if case_id.startswith("."):
        return "starts with '.' (hidden file, or '..' escaping the folder)"
    if case_id != case_id.strip():
        return "starts or ends with a blank"
    return None


def check_case_name(case_id: str, source: Path | str) -> str:
    """Return ``case_id`` if it can safely name files; ``source`` names where it came from.

    Raises:
        UnsafePathError: naming ``source``, the name and the fix.
    """
    problem = case_name_problem(case_id)
    if problem is not None:
        raise UnsafePathError(
            f"{source}: case name {case_id!r} {problem}; rename the case with letters, "
            "digits, '_' or '-' only."
        )
    return case_id


def case_file(folder: Path, case_id: str, suffix: str) -> Path:
    """``folder/CASE+suffix``, refusing any name that would resolve outside ``folder``.

    Raises:
        UnsafePathError: unsafe ``case_id``.
    """
    folder = Path(folder)
    check_case_name(case_id, folder)
    path = folder / f"{case_id}{suffix}"
    if path.resolve().parent != folder.resolve():
        raise UnsafePathError(f"{folder}: case name {case_id!r} would write outside the folder.")
    return path


def _is_within(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def output_dir_problem(input_paths: Iterable[Path], output_dir: Path) -> str | None:
    """Why ``output_dir`` must not receive predictions for ``input_paths``, or None.

    ``output_dir`` must not be an input folder, nor lie inside one (the next run would read
    the outputs as inputs: sub-folders are DICOM series), nor be an input file.
    """
    output_dir = Path(output_dir)
    for inp in map(Path, input_paths):
        if inp.is_dir() and _is_within(output_dir, inp):
            return (
                f"{output_dir}: output folder is (inside) the input folder {inp}; predictions "
                "could overwrite the scans. Choose an output folder outside the input."
            )
        if inp.exists() and not inp.is_dir() and output_dir.resolve() == inp.resolve():
            return f"{output_dir}: is an input file; choose another output folder."
    return None


def check_output_dir(input_paths: Iterable[Path], output_dir: Path) -> None:
    """Raise if :func:`output_dir_problem` finds one.

    Raises:
        UnsafePathError: naming both paths and the fix.
    """
    problem = output_dir_problem(input_paths, output_dir)
    if problem is not None:
        raise UnsafePathError(problem)


def check_not_an_input(path: Path, input_paths: Iterable[Path]) -> None:
    """Refuse to write ``path`` when it is (or resolves to) one of ``input_paths``.

    Raises:
        UnsafePathError: the file to write is an input.
    """
    target = Path(path).resolve()
    for inp in map(Path, input_paths):
        if inp.resolve() == target or (inp.is_dir() and _is_within(target, inp)):
            raise UnsafePathError(
                f"{path}: would overwrite the input {inp}; choose an output folder outside "
                "the inputs."
            )
