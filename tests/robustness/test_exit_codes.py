"""The documented exit codes, and no traceback without -v."""

from __future__ import annotations

import errno
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from autojoint.cli import common
from autojoint.cli.common import (
    EXIT_DATASET,
    EXIT_ENVIRONMENT,
    EXIT_ERROR,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    EXIT_USAGE,
    run,
)
from autojoint.io.dataset import DatasetError
from autojoint.io.files import atomic_write, remove_stale_temp_files
from autojoint.io.image_io import ImageReadError
from autojoint.io.verify import EnvironmentProblem


def _raising(err: BaseException) -> Callable[[], None]:
    def job() -> None:
        raise err

    return job


@pytest.mark.parametrize(
    ("err", "code"),
    [
        (DatasetError("raw/dataset.json: bad"), EXIT_DATASET),
        (ImageReadError("x.nii.gz: corrupt"), EXIT_ERROR),
        (FileNotFoundError("plans.json: not found"), EXIT_ERROR),
        (ValueError("plans.json: malformed plan"), EXIT_ERROR),
        (OSError(errno.ENOSPC, "No space left on device"), EXIT_ENVIRONMENT),
        (PermissionError(errno.EACCES, "Permission denied"), EXIT_ENVIRONMENT),
        (EnvironmentProblem("work: not writable"), EXIT_ENVIRONMENT),
        (MemoryError(), EXIT_ENVIRONMENT),
        (TypeError("unexpected"), EXIT_INTERNAL),
        (KeyboardInterrupt(), EXIT_INTERRUPTED),
    ],
)
def test_errors_map_to_documented_codes(
    err: BaseException, code: int, capsys: pytest.CaptureFixture
) -> None:
    assert run(_raising(err), verbose=False) == code
    text = capsys.readouterr().err
    assert "Traceback" not in text and text.strip()
    if code == EXIT_INTERNAL:
        assert "internal error: TypeError: unexpected" in text and "-v" in text


def _documented_codes(doc: str, heading: str) -> set[int]:
    """The codes in the first column of the table under ``heading`` of ``docs/DOC``."""
    text = (Path(__file__).parents[2] / "docs" / doc).read_text(encoding="utf-8")
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    return {int(m) for m in re.findall(r"^\| (\d+) \|", section, flags=re.MULTILINE)}


def test_each_meaning_has_its_own_code_and_the_docs_list_them() -> None:
    codes = {name: v for name, v in vars(common).items() if name.startswith("EXIT_")}
    assert len(set(codes.values())) == len(codes), codes
    # "some cases failed" must not read as "the dataset has problems" (issue 18).
    assert EXIT_SOME_FAILED == 6 and EXIT_DATASET == 3
    assert _documented_codes("robustness.md", "## Exit codes") == set(codes.values())
    predict_codes = _documented_codes("prediction.md", "## Failures, exit codes")
    assert EXIT_SOME_FAILED in predict_codes and EXIT_DATASET not in predict_codes
    assert EXIT_USAGE in predict_codes


def test_verbose_reraises_the_original_error() -> None:
    with pytest.raises(DatasetError, match="bad"):
        run(_raising(DatasetError("bad")), verbose=True)


def test_job_may_return_its_own_code() -> None:
    assert run(lambda: 3, verbose=False) == 3
    assert run(lambda: ["case"], verbose=False) == EXIT_OK
    assert run(lambda: True, verbose=False) == EXIT_OK


def test_stale_temp_files_are_removed(tmp_path: Path) -> None:
    (tmp_path / ".tmp_abc.npz.part").write_bytes(b"partial")
    (tmp_path / ".tmp_img").mkdir()
    (tmp_path / ".tmp_img" / "case.nii.gz").write_bytes(b"partial")
    atomic_write(tmp_path / "case.npz", lambda fh: fh.write(b"complete"), binary=True)
    assert remove_stale_temp_files(tmp_path) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["case.npz"]
    assert remove_stale_temp_files(tmp_path / "missing") == 0


def test_only_old_temp_files_are_removed_when_others_may_be_writing(tmp_path: Path) -> None:
    old, young = tmp_path / ".tmp_old.nii.gz.part", tmp_path / ".tmp_new.nii.gz.part"
    old.write_bytes(b"left by a killed part")
    young.write_bytes(b"another part is writing it")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert remove_stale_temp_files(tmp_path, min_age_seconds=3600) == 1
    assert [p.name for p in tmp_path.iterdir()] == [young.name]
