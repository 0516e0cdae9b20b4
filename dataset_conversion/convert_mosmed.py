"""MosMedData COVID19_1110 -> autojoint raw dataset.

MosMedData ships ``studies/CT-0..CT-4/study_NNNN.nii.gz`` (one CT per study, grouped by
severity), ``masks/study_NNNN_mask.nii.gz`` for 50 studies (1 = ground-glass or
consolidation) and ``dataset_registry.csv`` (``study_id,category,study_file,mask_file``,
UTF-8 with a byte-order mark). The severity category CT-0..CT-4 becomes the diagnosis;
studies with a mask train both tasks, the others only the diagnosis.

Only studies present on disk are converted (downloads are often partial); registry rows
whose study file is absent are counted in the log. A mask on another grid than its study
is an error naming both files.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

from dataset_conversion.raw_writer import (
    ConversionError,
    ConvertedCase,
    add_common_arguments,
    clean_image,
    read_image,
    run_converter,
    snap_to_grid,
    to_hu_int16,
    to_uint8_label,
    write_raw_dataset,
)

logger = logging.getLogger(__name__)

CLASSES: tuple[str, ...] = ("CT-0", "CT-1", "CT-2", "CT-3", "CT-4")
LABELS: dict[str, int] = {"background": 0, "lesion": 1}
REGISTRY_FILE = "dataset_registry.csv"


def _resolve(root: Path, listed: str) -> Path:
    """Registry paths are written as ``/studies/CT-0/...``: relative to the dataset root."""
    return root / listed.strip().lstrip("/")


def read_registry(root: Path) -> list[tuple[str, str, Path, Path | None]]:
    """``(case_id, category, study, mask or None)`` for every registry row with its study.

    Raises:
        ConversionError: no registry, missing columns, unknown category, or no study found.
    """
    path = root / REGISTRY_FILE
    if not path.is_file():
        raise ConversionError(f"{path}: not found; point -i at the MosMedData folder.")
    rows: list[tuple[str, str, Path, Path | None]] = []
    absent = 0
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = {"category", "study_file", "mask_file"} - set(reader.fieldnames or [])
        if missing:
            raise ConversionError(f"{path}: missing columns {sorted(missing)}.")
        for line, row in enumerate(reader, start=2):
            category = row["category"].strip()
            if category not in CLASSES:
                raise ConversionError(
                    f"{path}:{line}: category '{category}' is not one of {CLASSES}."
                )
            study = _resolve(root, row["study_file"])
            if not study.is_file():
                absent += 1
                continue
            mask = _resolve(root, row["mask_file"]) if row["mask_file"].strip() else None
            if mask is not None and not mask.is_file():
                raise ConversionError(
                    f"{path}:{line}: mask {mask} listed but not found; restore it or clear "
                    "the mask_file cell to convert the study as classification-only."
                )
            case_id = study.name.removesuffix(".nii.gz").removesuffix(".nii")
            rows.append((case_id, category, study, mask))
    if absent:
        logger.warning("%s: %d listed studies are not on disk and are skipped", path, absent)
    if not rows:
        raise ConversionError(f"{root}: no study of {path.name} found on disk (studies/CT-*/).")
    return rows


def _cases(rows: list[tuple[str, str, Path, Path | None]]) -> Iterator[ConvertedCase]:
    for case_id, category, study, mask in rows:
        image = clean_image(to_hu_int16(read_image(study)))
        label = None
        if mask is not None:
            label = snap_to_grid(to_uint8_label(read_image(mask), str(mask), len(LABELS)), image)
        yield ConvertedCase(
            case_id, (image,), label, category, str(study), label_source=str(mask or "")
        )


def convert_mosmed(root: Path, out_dir: Path, *, overwrite: bool = False) -> dict[str, int]:
    """Convert MosMedData under ``root`` (``dataset_registry.csv``, ``studies/``, ``masks/``).

    Raises:
        ConversionError: see :func:`read_registry`; a mask off its study's grid.
    """
    rows = read_registry(Path(root))
    return write_raw_dataset(
        out_dir,
        _cases(rows),
        labels=LABELS,
        classes=CLASSES,
        name="MosMedData",
        description="MosMedData COVID19_1110: severity CT-0..CT-4 as the diagnosis; "
        "lesion masks (ground-glass + consolidation) for the studies that have one.",
        num_cases=len(rows),
        overwrite=overwrite,
    )


def main(argv: list[str] | None = None) -> int:
    """``autojoint_convert_mosmed``: see ``--help``."""
    parser = argparse.ArgumentParser(
        prog="autojoint_convert_mosmed",
        description="Convert MosMedData (dataset_registry.csv, studies/CT-0..CT-4, masks/) "
        "into an autojoint raw dataset: severity class as the diagnosis, lesion masks where "
        "present.",
    )
    parser.add_argument("-i", "--input", required=True, type=Path, help="MosMedData folder")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    return run_converter(
        parser, lambda: convert_mosmed(args.input, args.output, overwrite=args.overwrite)
    )


if __name__ == "__main__":
    sys.exit(main())
