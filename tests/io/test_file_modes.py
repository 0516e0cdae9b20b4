"""Finished outputs get ordinary permissions (0o666 / 0o777 minus the umask), not the
owner-only 0o600 / 0o700 of the temp files and folders they were written through."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np

from autojoint.io.files import DIR_MODE, FILE_MODE, atomic_write, write_json
from autojoint.io.image_io import ImageGeometry, write_image
from dataset_conversion.raw_writer import _publish, _staging_dir


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


def test_modes_follow_the_umask() -> None:
    assert 0o666 & ~_umask() == FILE_MODE and 0o777 & ~_umask() == DIR_MODE
    assert FILE_MODE & stat.S_IRUSR and DIR_MODE & stat.S_IXUSR


def test_atomic_files_and_images_are_not_owner_only(tmp_path: Path) -> None:
    write_json({"a": 1}, tmp_path / "x.json")
    atomic_write(tmp_path / "y.bin", lambda fh: fh.write(b"1"), binary=True)
    geo = ImageGeometry((2, 3, 4), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    write_image(np.zeros((2, 3, 4), np.uint8), geo, tmp_path / "m.nii.gz")
    for name in ("x.json", "y.bin", "m.nii.gz"):
        assert _mode(tmp_path / name) == FILE_MODE, name


def test_published_converter_folder_is_not_owner_only(tmp_path: Path) -> None:
    out = tmp_path / "raw"
    staging = _staging_dir(out, overwrite=False)
    (staging / "dataset.json").write_text("{}", encoding="utf-8")
    _publish(staging, out)
    assert _mode(out) == DIR_MODE
