"""Which scans an input folder holds: one case per ``CASE_XXXX`` channel set, plain
``CASE`` file or DICOM series folder, and the folder's entries that do not form a case.

Kept apart from the predictor so that naming rules (what the user's folder means) live in
one small module; the predictor only consumes the resulting cases.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from autojoint.inference.outputs import CaseFailure
from autojoint.io.dataset import order_channels

logger = logging.getLogger(__name__)

IMAGE_ENDINGS = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd")


@dataclass(frozen=True)
class InputCase:
    case_id: str
    paths: tuple[Path, ...]


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
        else:
            split = _split_ending(p.name)
            if split is None:
                logger.warning("skipping %s: not an image file (%s)", p, ", ".join(IMAGE_ENDINGS))
                continue
            case, ch = _case_and_channel(split[0])
        slots = channels.setdefault(case, {})
        if ch in slots:
            clashes.setdefault(case, [slots[ch]]).append(p)
            continue
        slots[ch] = p
    if not channels:
        raise FileNotFoundError(f"{input_dir}: holds no images ({', '.join(IMAGE_ENDINGS)}).")
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
