"""``autojoint_install_model``: a shared model zip into a work directory, checked first.

A model zip comes from someone else, so nothing in it is trusted before it is checked:

1. every member's path stays inside the target folder (no absolute path, no ``..``, no
   drive letter or backslash) and is a plain file (no symlink or device);
2. the members are exactly the manifest's files (``autojoint_model.json``), each with the
   SHA-256 the manifest states (a truncated or altered zip is refused);
3. every checkpoint loads with ``torch.load(weights_only=True)`` (no code runs from it)
   and holds a valid plan;
4. the target holds no different model: a file the zip would overwrite must already have
   the same bytes, and an installed model (its manifest) must be this one.

Only then does it appear: extracted into a temp folder beside the target, then renamed
into place (the whole folder when the target is new or empty; else file by file, the
manifest last, so its presence means the install completed).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from autojoint.io.files import DIR_MODE, FILE_MODE
from autojoint.runtime.checkpoint import read_checkpoint
from autojoint.sharing.package import MANIFEST_FILE, ModelManifest, read_manifest, sha256_of

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20
_CHECKPOINT_SUFFIX = ".pt"


class ModelInstallError(ValueError):
    """A model zip refused by a check (the message names the zip, the member and the fix)."""


@dataclass(frozen=True)
class InstallResult:
    """What :func:`install_model` did: the manifest installed, and whether the target
    already held this very model (then nothing was written)."""

    manifest: ModelManifest
    work_dir: Path
    already_installed: bool


def member_problem(info: zipfile.ZipInfo) -> str | None:
    """Why a zip member could not be extracted safely inside the target folder, or None."""
    name = info.filename
    path = PurePosixPath(name)
    if "\\" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "is an absolute path or holds a backslash"
    if any(part in ("..", "") for part in name.rstrip("/").split("/")) or not path.parts:
        return "leaves the target folder (an empty or '..' path part)"
    kind = stat.S_IFMT(info.external_attr >> 16)  # 0: no Unix file type recorded
    if kind == stat.S_IFLNK:
        return "is a symbolic link"
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        return "is not a plain file"
    return None


def _refuse(zip_path: Path, what: str) -> ModelInstallError:
    return ModelInstallError(
        f"{zip_path}: {what}; it is not a model zip autojoint_export_model wrote (or it was "
        "altered): do not install it, ask for a fresh export."
    )


def _checked_members(zip_path: Path, zf: zipfile.ZipFile) -> tuple[ModelManifest, list[str]]:
    """The manifest and the file members, after checks 1 and 2 (the hashes are checked
    while extracting)."""
    names = []
    for info in zf.infolist():
        if problem := member_problem(info):
            raise _refuse(zip_path, f"member {info.filename!r} {problem}")
        if not info.is_dir():
            names.append(info.filename)
    if len(set(names)) != len(names):
        raise _refuse(zip_path, "a member name appears twice")
    if MANIFEST_FILE not in names:
        raise _refuse(zip_path, f"no {MANIFEST_FILE}")
    try:
        data = json.loads(zf.read(MANIFEST_FILE).decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise _refuse(zip_path, f"{MANIFEST_FILE} is not JSON ({err})") from err
    manifest = ModelManifest.from_dict(data, f"{zip_path}: {MANIFEST_FILE}")
    listed = set(manifest.files)
    found = set(names) - {MANIFEST_FILE}
    if listed != found:
        extra, missing = sorted(found - listed), sorted(listed - found)
        raise _refuse(
            zip_path,
            f"its members differ from its manifest (not listed: {extra or 'none'}; "
            f"missing: {missing or 'none'})",
        )
    for name in manifest.files:
        if problem := member_problem(zipfile.ZipInfo(name)):
            raise _refuse(zip_path, f"manifest entry {name!r} {problem}")
    return manifest, sorted(found)


def _extract(zip_path: Path, zf: zipfile.ZipFile, manifest: ModelManifest, dest: Path) -> None:
    """Extract every listed member into ``dest``, checking its SHA-256 as it streams."""
    for name, expected in manifest.files.items():
        target = dest.joinpath(*PurePosixPath(name).parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with zf.open(name) as src, open(target, "wb") as out:
            while chunk := src.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
        os.chmod(target, FILE_MODE)
        if digest.hexdigest() != expected:
            raise _refuse(zip_path, f"member {name} does not have the SHA-256 its manifest states")
    with zf.open(MANIFEST_FILE) as src, open(dest / MANIFEST_FILE, "wb") as out:
        shutil.copyfileobj(src, out)
    os.chmod(dest / MANIFEST_FILE, FILE_MODE)


def _check_checkpoints(zip_path: Path, dest: Path, manifest: ModelManifest) -> None:
    """Check 3: each checkpoint loads safely and holds a valid plan."""
    for name in manifest.files:
        if not name.endswith(_CHECKPOINT_SUFFIX):
            continue
        try:
            read_checkpoint(dest.joinpath(*PurePosixPath(name).parts))
        except (ValueError, FileNotFoundError) as err:
            raise ModelInstallError(
                f"{zip_path}: member {name} is refused: it does not load as an autojoint "
                f"checkpoint with torch.load(weights_only=True) ({err}). Do not install it; "
                "ask for a fresh export (autojoint_export_model)."
            ) from err


def _conflicts(work_dir: Path, manifest: ModelManifest) -> list[str]:
    """Files of ``manifest`` that ``work_dir`` holds with other bytes (check 4)."""
    out = []
    for name, expected in manifest.files.items():
        path = work_dir.joinpath(*PurePosixPath(name).parts)
        if path.exists() and (not path.is_file() or sha256_of(path) != expected):
            out.append(name)
    return out


def _place(staged: Path, work_dir: Path, manifest: ModelManifest) -> None:
    """Move the checked files from ``staged`` into ``work_dir``: one rename of the folder
    when the target is new or empty, else file by file with the manifest last."""
    if work_dir.is_dir() and not any(work_dir.iterdir()):
        work_dir.rmdir()
    if not work_dir.exists():
        os.chmod(staged, DIR_MODE)
        os.rename(staged, work_dir)
        return
    for name in [*manifest.files, MANIFEST_FILE]:
        parts = PurePosixPath(name).parts
        target = work_dir.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged.joinpath(*parts), target)


def install_model(zip_path: Path, work_dir: Path) -> InstallResult:
    """Install the model zip ``zip_path`` into ``work_dir`` (module docstring: checks,
    then an atomic placement). Installing the same model again changes nothing.

    Raises:
        FileNotFoundError: no such zip.
        ModelInstallError: a check failed (an unsafe or altered zip, a checkpoint that does
            not load with ``weights_only=True``, or a different model in ``work_dir``).
    """
    zip_path, work_dir = Path(zip_path), Path(work_dir)
    if not zip_path.is_file():
        raise FileNotFoundError(
            f"{zip_path}: no such model zip; export one with autojoint_export_model."
        )
    if work_dir.exists() and not work_dir.is_dir():
        raise ModelInstallError(f"{work_dir}: is a file, not a folder; pass a folder as -w.")
    try:
        zf = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as err:
        raise _refuse(zip_path, f"not a readable zip ({err})") from err
    with zf:
        manifest, _ = _checked_members(zip_path, zf)
        installed = read_manifest(work_dir) if work_dir.is_dir() else None
        if installed is not None and installed.files != manifest.files:
            raise ModelInstallError(
                f"{work_dir}: already holds another installed model (variant "
                f"{installed.variant}, exported {installed.created}); install into a new "
                "folder (-w NEW_DIR) or delete this one first."
            )
        if work_dir.is_dir() and (conflicts := _conflicts(work_dir, manifest)):
            more = f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
            raise ModelInstallError(
                f"{work_dir}: already holds a different model: {work_dir / conflicts[0]} "
                f"differs from the zip's{more}; install into a new folder (-w NEW_DIR) or "
                "delete them first."
            )
        work_dir.parent.mkdir(parents=True, exist_ok=True)
        staged = Path(tempfile.mkdtemp(prefix=f".{work_dir.name}.install-", dir=work_dir.parent))
        try:
            _extract(zip_path, zf, manifest, staged)
            _check_checkpoints(zip_path, staged, manifest)
            if installed is not None:
                logger.info("%s already holds this model; nothing to install", work_dir)
                return InstallResult(manifest, work_dir, already_installed=True)
            _place(staged, work_dir, manifest)
        finally:
            shutil.rmtree(staged, ignore_errors=True)
    logger.info(
        "installed variant %s (%s, folds %s) into %s; predict with: autojoint_predict -w %s %s",
        manifest.variant,
        manifest.configuration,
        ", ".join(manifest.folds),
        work_dir,
        work_dir,
        " ".join(manifest.predict_flags),
    )
    return InstallResult(manifest, work_dir, already_installed=False)
