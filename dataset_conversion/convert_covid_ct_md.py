"""COVID-CT-MD (Afshar et al., Sci Data 8:121, 2021) -> autojoint raw dataset.

COVID-CT-MD ships one DICOM series per patient in three class folders (``COVID-19 Cases``,
``CAP Cases``, ``Normal Cases``), a diagnosis per patient and slice-level infection flags,
but no voxel masks: every converted case is classification-only (diagnosis, no
``labelsTr``). Two input forms are read, alone or together:

* class folders: ``ROOT/<class folder>/<patient>/*.dcm``; the class comes from the folder
  name (contains ``covid``, ``cap`` or ``normal``, any case);
* a case table ``ROOT/cases.csv`` with columns ``case_id,diagnosis,file``, ``file`` being a
  NIfTI file or a DICOM folder relative to ROOT (the layout of ``../shared/data/covid_ct_md``).

Slice-level flags (``slice_labels.csv``: ``case_id,z_index_nifti,infected`` and optional
per-lobe columns, indexed along the converted image's z axis) are copied to
``slice_labelsTr.csv`` for the converted cases; the planner ignores that file.

Privacy: DICOM headers hold patient name, id and birth date. Images are rebuilt from voxels
and geometry only (:func:`clean_image`), case ids are the dataset's folder names
(``P001``, ``cap001``...), and nothing else from a header is written.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from dataset_conversion.raw_writer import (
    ConversionError,
    ConvertedCase,
    add_common_arguments,
    clean_image,
    read_dicom_series,
    read_image,
    run_converter,
    to_hu_int16,
    write_csv,
    write_raw_dataset,
)

logger = logging.getLogger(__name__)

CLASSES: tuple[str, ...] = ("COVID-19", "CAP", "Normal")
LABELS: dict[str, int] = {"background": 0, "lesion": 1}
CASES_FILE = "cases.csv"
SLICE_LABELS_FILE = "slice_labels.csv"
SLICE_LABELS_OUT = "slice_labelsTr.csv"


def class_of_folder(name: str) -> str | None:
    """Diagnosis from a class folder name (``COVID-19 Cases`` -> ``COVID-19``), or None."""
    low = name.lower()
    if "covid" in low:
        return "COVID-19"
    if "cap" in low:
        return "CAP"
    if "normal" in low:
        return "Normal"
    return None


def normalise_diagnosis(text: str, source: str) -> str:
    """Map spellings in case tables (``covid``, ``Cap``, ``normal``) to :data:`CLASSES`."""
    for name in CLASSES:
        if text.strip().lower() == name.lower():
            return name
    found = class_of_folder(text)
    if found is None:
        raise ConversionError(f"{source}: unknown diagnosis '{text}'; expected one of {CLASSES}.")
    return found


def find_sources(root: Path) -> dict[str, tuple[str, Path]]:
    """``{case_id: (diagnosis, path)}`` from class folders and ``cases.csv`` under ``root``.

    Raises:
        ConversionError: nothing found, a case found twice, or a missing file.
    """
    found: dict[str, tuple[str, Path]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        diagnosis = class_of_folder(folder.name)
        if diagnosis is None:
            continue
        for patient in sorted(p for p in folder.iterdir() if p.is_dir()):
            found[patient.name] = (diagnosis, patient)
    table = root / CASES_FILE
    if table.is_file():
        with open(table, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            missing = {"case_id", "diagnosis", "file"} - set(reader.fieldnames or [])
            if missing:
                raise ConversionError(f"{table}: missing columns {sorted(missing)}.")
            for line, row in enumerate(reader, start=2):
                case_id, path = row["case_id"].strip(), root / row["file"].strip()
                if case_id in found:
                    raise ConversionError(f"{table}:{line}: case '{case_id}' found twice.")
                if not path.exists():
                    raise ConversionError(f"{table}:{line}: {path} not found.")
                found[case_id] = (normalise_diagnosis(row["diagnosis"], f"{table}:{line}"), path)
    if not found:
        raise ConversionError(
            f"{root}: no class folders (COVID-19 Cases, CAP Cases, Normal Cases) with patient "
            f"DICOM folders and no {CASES_FILE}; point -i at the COVID-CT-MD folder."
        )
    return found


def read_slice_labels(path: Path, num_slices: dict[str, int]) -> tuple[list[str], list[list[str]]]:
    """Rows of ``slice_labels.csv`` for the converted cases, z indices checked.

    Raises:
        ConversionError: missing columns, or a z index outside its image.
    """
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, [])
        if header[:3] != ["case_id", "z_index_nifti", "infected"]:
            raise ConversionError(
                f"{path}: header must start with case_id,z_index_nifti,infected; got {header[:3]}."
            )
        rows = []
        for line, row in enumerate(reader, start=2):
            case = row[0]
            if case not in num_slices:
                continue
            z = int(row[1])
            if not 0 <= z < num_slices[case]:
                raise ConversionError(
                    f"{path}:{line}: z index {z} outside case '{case}' ({num_slices[case]} slices)."
                )
            rows.append(row)
    return header, rows


def _cases(
    sources: dict[str, tuple[str, Path]], num_slices: dict[str, int]
) -> Iterator[ConvertedCase]:
    for case_id, (diagnosis, path) in sorted(sources.items()):
        image = read_dicom_series(path) if path.is_dir() else read_image(path)
        if image.GetDimension() != 3:
            raise ConversionError(f"{path}: expected a 3D CT, got {image.GetDimension()}D.")
        image = clean_image(to_hu_int16(image))
        num_slices[case_id] = image.GetSize()[2]
        yield ConvertedCase(case_id, (image,), None, diagnosis, str(path))


def convert_covid_ct_md(
    root: Path,
    out_dir: Path,
    *,
    slice_labels: Path | None = None,
    overwrite: bool = False,
) -> dict[str, int]:
    """Convert COVID-CT-MD under ``root`` (class folders and/or ``cases.csv``).

    Args:
        slice_labels: slice-level flags CSV; default ``root/slice_labels.csv`` when present.

    Raises:
        ConversionError: see :func:`find_sources`, :func:`read_slice_labels`.
    """
    root = Path(root)
    sources = find_sources(root)
    if slice_labels is None and (root / SLICE_LABELS_FILE).is_file():
        slice_labels = root / SLICE_LABELS_FILE
    num_slices: dict[str, int] = {}
    extras: dict[str, Callable[[Path], None]] = {}
    if slice_labels is not None:
        labels_path = Path(slice_labels)

        def write_slices(path: Path) -> None:  # runs after every case was read
            header, rows = read_slice_labels(labels_path, num_slices)
            write_csv(rows, header, path)

        extras[SLICE_LABELS_OUT] = write_slices
    return write_raw_dataset(
        out_dir,
        _cases(sources, num_slices),
        labels=LABELS,
        classes=CLASSES,
        name="COVID-CT-MD",
        description="COVID-CT-MD (Afshar et al., Sci Data 8:121, 2021): diagnosis per "
        "patient, no voxel masks (classification-only cases); slice-level infection flags "
        f"in {SLICE_LABELS_OUT} when given.",
        extras=extras,
        num_cases=len(sources),
        overwrite=overwrite,
    )


def main(argv: list[str] | None = None) -> int:
    """``autojoint_convert_covid_ct_md``: see ``--help``."""
    parser = argparse.ArgumentParser(
        prog="autojoint_convert_covid_ct_md",
        description="Convert COVID-CT-MD (class folders of patient DICOM series, and/or a "
        "cases.csv of case_id,diagnosis,file) into an autojoint raw dataset of "
        "classification-only cases; slice-level infection flags are kept in "
        "slice_labelsTr.csv. No DICOM patient identifier is written.",
    )
    parser.add_argument("-i", "--input", required=True, type=Path, help="COVID-CT-MD folder")
    add_common_arguments(parser)
    parser.add_argument(
        "--slice-labels",
        type=Path,
        default=None,
        help="slice-level flags CSV (default INPUT/slice_labels.csv when present)",
    )
    args = parser.parse_args(argv)
    return run_converter(
        parser,
        lambda: convert_covid_ct_md(
            args.input, args.output, slice_labels=args.slice_labels, overwrite=args.overwrite
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
