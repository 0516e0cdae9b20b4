"""Write converted cases into autojoint's raw layout, all or nothing.

Every converter turns a public dataset into :class:`ConvertedCase` objects and hands them to
:func:`write_raw_dataset`, which

* stages the whole dataset in a hidden sibling folder and renames it over the target only
  when every case was written and the result passes :func:`autojoint.io.dataset.load_raw_dataset`,
  so an interrupted conversion never leaves a half dataset that would plan silently;
* rebuilds every image from its voxels and geometry, so no source metadata (DICOM patient
  tags) can travel into the output;
* checks what the planner would refuse later (mask grid, mask values, diagnosis names) and
  names the source file in the error.

The demo generator writes through it too, in place (``in_place=True``): a rerun refreshes
the demo's own cases in an existing folder instead of replacing the folder.

Layout written (docs/dataset_format.md)::

    OUT/dataset.json, OUT/imagesTr/CASE_0000.nii.gz, OUT/labelsTr/CASE.nii.gz (optional),
    OUT/diagnosesTr.csv (when classes are given), OUT/imagesTs/... (optional test split),
    plus converter extras (``lungsTr/``, ``slice_labelsTr.csv``) the planner ignores.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from autojoint.io.dataset import DatasetError, load_raw_dataset
from autojoint.io.files import DIR_MODE, atomic_write, write_json
from autojoint.io.image_io import geometry_of, write_sitk_image

logger = logging.getLogger(__name__)

FILE_ENDING = ".nii.gz"
_CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ConversionError(ValueError):
    """The source dataset cannot be converted; the message names the file and the fix."""


@dataclass(frozen=True, eq=False)
class ConvertedCase:
    """One case ready to write.

    Attributes:
        case_id: output name (letters, digits, ``_ . -``); never a patient identifier.
        channels: one SimpleITK image per input channel, all on one grid.
        label: lesion mask on the image grid, or None (classification-only case).
        diagnosis: one of the dataset's classes, or None (segmentation-only case).
        source: the file or folder it came from, for error messages.
        split: ``"Tr"`` (training) or ``"Ts"`` (held-out test).
        lung: optional lung mask on the image grid, written to ``lungs{split}/``.
        label_source: the mask's file, for error messages.
    """

    case_id: str
    channels: tuple[sitk.Image, ...]
    label: sitk.Image | None
    diagnosis: str | None
    source: str
    split: str = "Tr"
    lung: sitk.Image | None = None
    label_source: str = ""


def clean_image(image: sitk.Image, pixel_type: int | None = None) -> sitk.Image:
    """A new image holding only voxels and geometry (spacing, origin, direction).

    Copying through an array drops every metadata key the reader attached (a DICOM
    series carries patient name, id and birth date); ``pixel_type`` optionally casts,
    e.g. ``sitk.sitkInt16`` for HU or ``sitk.sitkUInt8`` for masks (values must fit).
    """
    if pixel_type is not None and image.GetPixelID() != pixel_type:
        image = sitk.Cast(image, pixel_type)
    out = sitk.GetImageFromArray(sitk.GetArrayFromImage(image))
    out.SetSpacing(image.GetSpacing())
    out.SetOrigin(image.GetOrigin())
    out.SetDirection(image.GetDirection())
    return out


def to_uint8_label(image: sitk.Image, source: str, num_labels: int) -> sitk.Image:
    """Cast a mask to uint8 after checking its values are integers in ``0..num_labels-1``.

    Raises:
        ConversionError: non-integer or undeclared values, naming ``source``.
    """
    arr = sitk.GetArrayViewFromImage(image)
    values = np.unique(arr)
    if not np.all(values == np.round(values)) or values.min() < 0 or values.max() >= num_labels:
        raise ConversionError(
            f"{source}: mask values {values[:10].tolist()} are not all in 0..{num_labels - 1}; "
            "declare more label names or merge labels (see the converter's --help)."
        )
    return clean_image(image, sitk.sitkUInt8)


def same_grid(a: sitk.Image, b: sitk.Image) -> bool:
    """Equal size, and spacing/origin/direction equal within the tolerances the whole
    pipeline uses (:meth:`autojoint.io.image_io.ImageGeometry.matches`)."""
    if a.GetDimension() != b.GetDimension() or a.GetSize() != b.GetSize():
        return False  # geometry_of keeps three axes; a 4th must match by size here
    return geometry_of(a).matches(geometry_of(b))


def snap_to_grid(mask: sitk.Image, image: sitk.Image, *, atol_mm: float = 0.01) -> sitk.Image:
    """Give ``mask`` the header of ``image`` when they differ only by float rounding.

    Masks saved by another tool often carry the scan's geometry rounded to a few digits;
    a larger difference is left alone so the grid check reports it.
    """
    if mask.GetSize() == image.GetSize() and (
        np.allclose(mask.GetSpacing(), image.GetSpacing(), atol=atol_mm, rtol=0)
        and np.allclose(mask.GetOrigin(), image.GetOrigin(), atol=atol_mm, rtol=0)
        and np.allclose(mask.GetDirection(), image.GetDirection(), atol=1e-3, rtol=0)
    ):
        mask = clean_image(mask)
        mask.CopyInformation(image)
    return mask


def to_hu_int16(image: sitk.Image) -> sitk.Image:
    """Round to int16 HU (readers apply rescale slope/intercept, sometimes as float)."""
    arr = sitk.GetArrayFromImage(image)
    if arr.dtype != np.int16:
        arr = np.clip(np.rint(arr), -32768, 32767).astype(np.int16)
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(image)
    return out


def grid_text(img: sitk.Image) -> str:
    """Short description of a grid for error messages."""
    sp = tuple(round(s, 4) for s in img.GetSpacing())
    org = tuple(round(o, 2) for o in img.GetOrigin())
    return f"size {img.GetSize()}, spacing {sp}, origin {org}"


def read_image(path: Path) -> sitk.Image:
    """Read one image file, naming it when SimpleITK cannot.

    Raises:
        ConversionError: unreadable or corrupt file.
    """
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1] if str(err).strip() else ""
        raise ConversionError(
            f"{path}: unreadable or corrupt image ({first}); re-download or remove it."
        ) from err


def read_dicom_series(folder: Path) -> sitk.Image:
    """Read the single DICOM series in ``folder`` (sorted by position, rescale applied).

    Raises:
        ConversionError: no series, or several series in one folder.
    """
    ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not ids:
        raise ConversionError(f"{folder}: no DICOM series found; expected one patient's slices.")
    if len(ids) > 1:
        raise ConversionError(
            f"{folder}: {len(ids)} DICOM series in one folder; keep one series per patient folder."
        )
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), ids[0])
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        return reader.Execute()
    except RuntimeError as err:
        raise ConversionError(f"{folder}: cannot decode the DICOM series ({err}).") from err


def _check_case(case: ConvertedCase, labels: dict[str, int], classes: Sequence[str]) -> None:
    if not _CASE_ID.match(case.case_id):
        raise ConversionError(
            f"{case.source}: case id '{case.case_id}' must use letters, digits, '_', '.', '-'."
        )
    if case.split not in ("Tr", "Ts"):
        raise ConversionError(f"{case.source}: split must be 'Tr' or 'Ts', got {case.split!r}.")
    if not case.channels:
        raise ConversionError(f"{case.source}: case '{case.case_id}' has no image.")
    ref = case.channels[0]
    for i, ch in enumerate(case.channels[1:], start=1):
        if not same_grid(ref, ch):
            raise ConversionError(
                f"{case.source}: channel {i} ({grid_text(ch)}) is not on the grid of channel 0 "
                f"({grid_text(ref)}); resample it first."
            )
    for what, mask in (("lesion mask", case.label), ("lung mask", case.lung)):
        if mask is not None and not same_grid(ref, mask):
            raise ConversionError(
                f"{case.source}: {what} {case.label_source} ({grid_text(mask)}) is not on the "
                f"image grid ({grid_text(ref)}); the mask must come from the same scan."
            )
    if case.label is not None:
        values = np.unique(sitk.GetArrayViewFromImage(case.label))
        unknown = sorted(set(values.tolist()) - set(labels.values()))
        if unknown:
            raise ConversionError(
                f"{case.source}: mask {case.label_source} values {unknown} are not declared "
                f"in labels {labels}."
            )
    if case.diagnosis is not None and case.diagnosis not in classes:
        raise ConversionError(
            f"{case.source}: diagnosis '{case.diagnosis}' is not one of {list(classes)}."
        )


def write_sitk(image: sitk.Image, path: Path) -> None:
    """Write ``image`` atomically (``autojoint.io.image_io.write_sitk_image``)."""
    write_sitk_image(image, path)


def write_csv(rows: Iterable[Sequence[object]], header: Sequence[str], path: Path) -> None:
    """Write a small CSV atomically."""

    def write(fh: IO[Any]) -> None:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)

    atomic_write(path, write)


def _staging_dir(out_dir: Path, overwrite: bool) -> Path:
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise ConversionError(
            f"{out_dir}: exists and is not empty; choose a new folder or pass --overwrite."
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    os.chmod(staging, DIR_MODE)  # the published folder: readable as any other, not 0o700
    return staging


def _publish(staging: Path, out_dir: Path) -> None:
    """Swap the finished staging folder in; an older output is removed only afterwards."""
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.replace(out_dir, old)
    os.replace(staging, out_dir)
    if old is not None:
        shutil.rmtree(old)


def write_raw_dataset(
    out_dir: Path,
    cases: Iterable[ConvertedCase],
    *,
    labels: dict[str, int],
    classes: Sequence[str] = (),
    channel_names: dict[str, str] | None = None,
    name: str,
    description: str,
    extras: Mapping[str, Callable[[Path], None]] | None = None,
    num_cases: int | None = None,
    overwrite: bool = False,
    in_place: bool = False,
    sort_diagnoses: bool = True,
) -> dict[str, int]:
    """Write ``cases`` as a raw dataset into ``out_dir`` (all or nothing unless ``in_place``).

    Args:
        out_dir: target folder; must be absent or empty unless ``overwrite`` or ``in_place``.
        cases: converted cases, consumed one at a time (a generator keeps memory flat).
        labels: lesion label names to values, background 0.
        classes: diagnosis names; empty for a segmentation-only dataset.
        channel_names: ``dataset.json`` channel names (default ``{"0": "CT"}``).
        name, description: written to ``dataset.json``.
        extras: file name -> writer(path) for converter-specific files (written in staging).
        num_cases: length of ``cases`` for the progress bar, when known.
        overwrite: replace an existing non-empty ``out_dir``.
        in_place: write straight into ``out_dir`` and keep the files already there, for a
            generator that refreshes its own dataset (the demo: it removes its stale cases
            itself, and a user's other files stay). Not all or nothing; still validated.
        sort_diagnoses: rows of ``diagnoses{Tr,Ts}.csv`` sorted by case id; False keeps the
            order the cases came in (the demo's numbering: ``demo_999`` before ``demo_1000``).

    Returns:
        Counts: ``num_training``, ``num_test``, ``num_with_label``, ``num_with_diagnosis``.

    Raises:
        ConversionError: a bad case or an empty result (nothing is left behind, except the
            cases written before it when ``in_place``).
    """
    out_dir = Path(out_dir)
    layout = _Layout(
        labels=labels,
        classes=tuple(classes),
        channel_names=channel_names or {"0": "CT"},
        name=name,
        description=description,
        extras=extras or {},
        sort_diagnoses=sort_diagnoses,
    )
    if in_place:
        counts = _write_layout(out_dir, cases, layout, out_dir=out_dir, num_cases=num_cases)
    else:
        staging = _staging_dir(out_dir, overwrite)
        try:
            counts = _write_layout(staging, cases, layout, out_dir=out_dir, num_cases=num_cases)
            _publish(staging, out_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    logger.info("wrote %s: %s", out_dir, counts)
    return counts


@dataclass(frozen=True)
class _Layout:
    """What :func:`write_raw_dataset` declares for the whole dataset (see its Args)."""

    labels: dict[str, int]
    classes: tuple[str, ...]
    channel_names: dict[str, str]
    name: str
    description: str
    extras: Mapping[str, Callable[[Path], None]]
    sort_diagnoses: bool


def _write_layout(
    root: Path,
    cases: Iterable[ConvertedCase],
    layout: _Layout,
    *,
    out_dir: Path,
    num_cases: int | None,
) -> dict[str, int]:
    """Write every case, the diagnosis CSVs, the extras and ``dataset.json`` into ``root``,
    then validate ``root`` as the planner would (``out_dir`` names the target in errors)."""
    labels, classes, channel_names = layout.labels, layout.classes, layout.channel_names
    diagnoses: dict[str, list[tuple[str, str]]] = {"Tr": [], "Ts": []}
    counts = {"num_training": 0, "num_test": 0, "num_with_label": 0, "num_with_diagnosis": 0}
    seen: set[str] = set()
    for case in tqdm(cases, total=num_cases, desc="convert", unit="case"):
        _check_case(case, labels, classes)
        if len(case.channels) != len(channel_names):
            raise ConversionError(
                f"{case.source}: {len(case.channels)} channel(s), dataset declares "
                f"{len(channel_names)} ({channel_names})."
            )
        if case.case_id in seen:
            raise ConversionError(f"{case.source}: case id '{case.case_id}' occurs twice.")
        seen.add(case.case_id)
        s = case.split
        for i, ch in enumerate(case.channels):
            write_sitk(ch, root / f"images{s}" / f"{case.case_id}_{i:04d}{FILE_ENDING}")
        if case.label is not None:
            write_sitk(case.label, root / f"labels{s}" / f"{case.case_id}{FILE_ENDING}")
            counts["num_with_label"] += s == "Tr"
        if case.lung is not None:
            write_sitk(case.lung, root / f"lungs{s}" / f"{case.case_id}{FILE_ENDING}")
        if case.diagnosis is not None:
            diagnoses[s].append((case.case_id, case.diagnosis))
            counts["num_with_diagnosis"] += s == "Tr"
        counts["num_training" if s == "Tr" else "num_test"] += 1
    if counts["num_training"] == 0:
        raise ConversionError(f"no training case found to write into {out_dir}.")
    if classes:
        for s, rows in diagnoses.items():
            if rows or s == "Tr":
                ordered = sorted(rows) if layout.sort_diagnoses else rows
                write_csv(ordered, ("case", "diagnosis"), root / f"diagnoses{s}.csv")
    for file_name, writer in layout.extras.items():
        writer(root / file_name)
    meta: dict[str, object] = {
        "name": layout.name,
        "description": layout.description,
        "channel_names": channel_names,
        "labels": labels,
        "numTraining": counts["num_training"],
        "file_ending": FILE_ENDING,
    }
    if classes:
        meta["classes"] = list(classes)
    write_json(meta, root / "dataset.json")
    try:
        load_raw_dataset(root)
    except DatasetError as err:
        raise ConversionError(f"converted dataset failed validation: {err}") from err
    return counts


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """``-o/--output`` and ``--overwrite``, shared by every converter."""
    parser.add_argument("-o", "--output", required=True, type=Path, help="raw dataset folder")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace OUTPUT if it exists and is not empty"
    )


def run_converter(parser: argparse.ArgumentParser, job: Callable[[], dict[str, int]]) -> int:
    """Run a converter job: one line on error (exit 1), the counts on success (exit 0)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        counts = job()
    except (ConversionError, DatasetError, FileNotFoundError) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 1
    print(", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0
