"""A zip of one DICOM series, unpacked into a temporary folder for as long as it is read.

PACS and web viewers export a series as a zip; accepting it as a folder saves the user an
unpack step. The zip comes from outside, so nothing in it may decide where a file lands:
a member whose path is absolute, climbs out with ``..`` or is a symbolic link is refused
(the whole zip, with the member named), and the temporary folder is removed afterwards
whatever happens.
"""

from __future__ import annotations

import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

ZIP_ENDING = ".zip"
TEMP_PREFIX = "autojoint_dicom_"
# Folders that zip tools add beside the content (macOS resource forks).
_IGNORED_TOP = {"__MACOSX"}


class DicomZipError(ValueError):
    """A zip that is not a safe, readable archive of one DICOM folder."""


def is_zip(path: Path) -> bool:
    return Path(path).name.lower().endswith(ZIP_ENDING) and Path(path).is_file()


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.filename.replace("\\", "/")
    parts = PurePosixPath(name).parts
    if name.startswith("/") or (parts and parts[0].endswith(":")):
        return "has an absolute path"
    if ".." in parts:
        return "climbs out of the archive with '..'"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "is a symbolic link"
    return None


def unpack(path: Path, dest: Path) -> Path:
    """Unpack the zip ``path`` into ``dest``; returns the folder holding its files.

    The files may lie at the top of the zip or in one folder (a zipped series folder),
    however deep.

    Raises:
        DicomZipError: not a zip, an unsafe member, or files in several folders.
    """
    path, dest = Path(path), Path(dest)
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            for member in members:
                if problem := _member_problem(member):
                    raise DicomZipError(
                        f"{path}: member '{member.filename}' {problem}; refusing to unpack an "
                        "archive that could write outside its folder. Zip the series folder "
                        "again (e.g. `cd PARENT && zip -r CASE.zip CASE`)."
                    )
            members = [m for m in members if PurePosixPath(m.filename).parts[0] not in _IGNORED_TOP]
            root = dest.resolve()
            for member in members:
                target = (dest / member.filename).resolve()
                if root not in target.parents:  # the checks above should make this impossible
                    raise DicomZipError(f"{path}: member '{member.filename}' leaves the folder.")
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError, EOFError) as err:
        raise DicomZipError(
            f"{path}: cannot be unpacked ({err}); the zip is corrupt, encrypted or not a zip. "
            "Zip the DICOM series folder again, without a password."
        ) from err
    folders = sorted({(dest / m.filename).parent for m in members})
    if len(folders) > 1:
        shown = ", ".join(str(f.relative_to(dest)) or "." for f in folders[:5])
        raise DicomZipError(
            f"{path}: holds files in {len(folders)} folders ({shown}); a case's zip holds one "
            "DICOM series folder. Zip each series separately (one zip per case)."
        )
    return folders[0] if folders else dest


@contextmanager
def unpacked(path: Path) -> Iterator[Path]:
    """The folder of the zip ``path``'s files, in a temporary folder removed on exit.

    Raises:
        DicomZipError: see :func:`unpack`.
    """
    tmp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
    try:
        yield unpack(path, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
