"""Which scans an input folder holds: one case per ``CASE_XXXX`` channel set, plain
``CASE`` file, DICOM series folder or zip of one, and the folder's entries that do not
form a case.

Kept apart from the predictor so that naming rules (what the user's folder means) live in
one small module; the predictor only consumes the resulting cases.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from autojoint.inference.outputs import CaseFailure
from autojoint.io.dataset import order_channels
from autojoint.io.dicom_series import (
    DicomSeries,
    DicomSeriesError,
    SeriesChoice,
    SeriesPick,
    dicom_folder,
)
from autojoint.io.dicom_zip import ZIP_ENDING, is_zip
from autojoint.io.image_io import ImageReadError, checked_series, is_dicom_input

logger = logging.getLogger(__name__)

IMAGE_ENDINGS = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd")
_KINDS = ", ".join(IMAGE_ENDINGS) + ", DICOM folders or .zip of one"


@dataclass(frozen=True)
class InputCase:
    """A case's files; ``series`` is its DICOM series once chosen (:func:`opened_case`)."""

    case_id: str
    paths: tuple[Path, ...]
    series: DicomSeries | None = None


@contextmanager
def opened_case(
    case: InputCase, choice: SeriesChoice, *, modality: str | None = None
) -> Iterator[tuple[InputCase, SeriesPick | None]]:
    """``case`` ready to read: a DICOM case (folder or zip) with its series chosen and
    checked (``io.image_io.checked_series``), a zip unpacked until the block ends; any other
    case as it is, with no pick.

    A choice among several series is logged (it is recorded in ``CASE.json`` too).

    Raises:
        ImageReadError: no series, several without a choice, or a refused series.
    """
    if len(case.paths) != 1 or not is_dicom_input(case.paths[0]):
        yield case, None
        return
    with dicom_folder(case.paths[0]) as folder:
        try:
            pick = checked_series(folder, choice, modality=modality)
        except DicomSeriesError as err:
            raise ImageReadError(str(err)) from err
        if pick.num_series > 1:
            logger.info(
                "case %s: reading %s of the %d series in %s (%s)",
                case.case_id,
                pick.series.describe(),
                pick.num_series,
                case.paths[0],
                pick.rule,
            )
        yield replace(case, series=pick.series), pick


def _split_ending(name: str) -> tuple[str, str] | None:
    for e in IMAGE_ENDINGS:
        if name.endswith(e):
            return name[: -len(e)], e
    return None


def discover_input_cases(
    input_dir: Path, num_channels: int
) -> tuple[list[InputCase], list[CaseFailure]]:
    """Cases in ``input_dir`` (see :func:`find_input_cases`) and the cases whose files do
    not form a valid case (e.g. a missing channel), which are reported, not raised.

    Raises:
        FileNotFoundError: missing folder or no images in it.
    """
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise FileNotFoundError(f"{input_dir}: input folder not found.")
    channels: dict[str, dict[int, Path]] = {}
    # Two files claiming one case's channel (CASE.nii.gz and CASE_0000.nii.gz, CASE.nii.gz
    # and CASE.mha, a DICOM folder CASE and CASE.nii.gz): which one is meant is a guess.
    clashes: dict[str, list[Path]] = {}
    for p in sorted(input_dir.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_dir():
            case, ch = p.name, 0  # DICOM series folder
        elif is_zip(p):
            case, ch = p.name[: -len(ZIP_ENDING)], 0  # zip of a DICOM series folder
        else:
            split = _split_ending(p.name)
            if split is None:
                logger.warning("skipping %s: not an image file (%s)", p, _KINDS)
                continue
            case, ch = _case_and_channel(split[0])
        slots = channels.setdefault(case, {})
        if ch in slots:
            clashes.setdefault(case, [slots[ch]]).append(p)
            continue
        slots[ch] = p
    if not channels:
        raise FileNotFoundError(f"{input_dir}: holds no images ({_KINDS}).")
    cases, failures = [], []
    for case, paths in sorted(clashes.items()):
        names = ", ".join(p.name for p in paths)
        reason = (
            f"{input_dir}: {names} are all read as case '{case}' "
            f"(channel {_channel_of(paths[0].name)}); keep one of them, or rename the others "
            "so that each case has one file per channel."
        )
        failures.append(CaseFailure(case, str(paths[0]), reason))
        del channels[case]
    for case, files in sorted(channels.items()):
        try:
            cases.append(InputCase(case, order_channels(files, num_channels, case, input_dir)))
        except ValueError as err:
            first = files[min(files)]
            failures.append(CaseFailure(case, str(first), str(err)))
    return cases, failures


def only_dicom_cases(cases: list[InputCase], why: str) -> tuple[list[InputCase], list[CaseFailure]]:
    """The cases read from one DICOM series (a folder or zip), and a failure for each other
    one: an output such as DICOM-SEG (``why``) needs the DICOM series it refers to."""
    dicom = [c for c in cases if len(c.paths) == 1 and is_dicom_input(c.paths[0])]
    failures = [
        CaseFailure(
            c.case_id,
            str(c.paths[0]),
            f"{c.paths[0]}: is not a DICOM series, but {why} needs one; give the case as a "
            "DICOM folder or zip, or predict it without that output.",
        )
        for c in cases
        if c not in dicom
    ]
    return dicom, failures


def _case_and_channel(stem: str) -> tuple[str, int]:
    """``CASE_XXXX`` -> ``(CASE, XXXX)`` (nnU-Net channel naming); any other stem is channel 0."""
    m = re.match(r"^(.+)_(\d{4})$", stem)
    return (m.group(1), int(m.group(2))) if m else (stem, 0)


def _channel_of(name: str) -> int:
    """The channel index a file or folder name encodes, 0 otherwise."""
    split = _split_ending(name)
    return _case_and_channel(split[0])[1] if split else 0


def find_input_cases(input_dir: Path, num_channels: int) -> list[InputCase]:
    """Cases in ``input_dir``: ``CASE_XXXX.ext`` channel files (nnU-Net naming), plain
    ``CASE.ext`` for single-channel plans, or sub-folders holding a DICOM series.

    Raises:
        FileNotFoundError: missing folder or no images in it.
        ValueError: a case with the wrong number of channels.
    """
    cases, failures = discover_input_cases(input_dir, num_channels)
    if failures:
        raise ValueError(failures[0].reason)
    return cases
