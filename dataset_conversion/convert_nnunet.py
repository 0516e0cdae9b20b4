"""nnU-Net v2 raw dataset (+ optional diagnoses CSV) -> autojoint raw dataset.

nnU-Net's layout is already ours (docs/dataset_format.md); what a converter adds is the
diagnosis side and the checks nnU-Net does not need: region-based or ``ignore`` labels have
no meaning for a lesion mask, nnU-Net v1's ``modality`` key becomes ``channel_names``, and
the diagnoses come from any CSV whose case and diagnosis columns are named on the command
line. Images are re-written as ``.nii.gz`` from voxels and geometry, whatever the source
``file_ending``.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from autojoint.io.files import read_json
from dataset_conversion.raw_writer import (
    ConversionError,
    ConvertedCase,
    add_common_arguments,
    clean_image,
    read_image,
    run_converter,
    to_uint8_label,
    write_raw_dataset,
)


def _labels_from_nnunet(meta: dict, path: Path) -> dict[str, int]:
    labels = meta.get("labels")
    if not isinstance(labels, dict):
        raise ConversionError(f"{path}: 'labels' missing or not an object.")
    out: dict[str, int] = {}
    for name, value in labels.items():
        if name == "ignore":
            raise ConversionError(
                f"{path}: the 'ignore' label (sparse annotation) is not supported; "
                "remove it from the masks and from 'labels'."
            )
        if not isinstance(value, int):
            raise ConversionError(
                f"{path}: label '{name}' = {value!r} is region-based; autojoint needs one "
                "integer per lesion label (convert the regions to plain labels first)."
            )
        out[str(name)] = value
    if out.get("background") != 0 or sorted(out.values()) != list(range(len(out))):
        raise ConversionError(f"{path}: labels must be background 0 and consecutive, got {out}.")
    return out


def _channels_from_nnunet(meta: dict, path: Path) -> dict[str, str]:
    channels = meta.get("channel_names", meta.get("modality"))
    if not isinstance(channels, dict) or not channels:
        raise ConversionError(f"{path}: needs 'channel_names' (v2) or 'modality' (v1).")
    return {str(k): str(v) for k, v in channels.items()}


def read_diagnoses(path: Path, case_column: str, diagnosis_column: str) -> dict[str, str]:
    """``{case: diagnosis}`` from any CSV; empty diagnoses are skipped (unknown).

    Raises:
        ConversionError: a column is missing or a case is listed twice.
    """
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        for col in (case_column, diagnosis_column):
            if col not in fields:
                raise ConversionError(
                    f"{path}: no column '{col}' (columns: {fields}); "
                    "pass --case-column / --diagnosis-column."
                )
        out: dict[str, str] = {}
        for line, row in enumerate(reader, start=2):
            case, diag = row[case_column].strip(), row[diagnosis_column].strip()
            if case in out:
                raise ConversionError(f"{path}:{line}: case '{case}' listed twice.")
            if diag:
                out[case] = diag
    return out


def _cases(
    root: Path,
    split: str,
    ending: str,
    num_channels: int,
    labels: dict[str, int],
    diagnoses: dict[str, str],
) -> Iterator[ConvertedCase]:
    images = root / f"images{split}"
    pattern = re.compile(r"^(.+)_(\d{4})" + re.escape(ending) + "$")
    groups: dict[str, dict[int, Path]] = {}
    for p in sorted(images.iterdir()) if images.is_dir() else []:
        m = pattern.match(p.name)
        if m:
            groups.setdefault(m.group(1), {})[int(m.group(2))] = p
        elif not p.name.startswith("."):
            raise ConversionError(f"{p}: not named CASE_XXXX{ending} as nnU-Net requires.")
    for case_id, files in sorted(groups.items()):
        if sorted(files) != list(range(num_channels)):
            raise ConversionError(
                f"{images}: case '{case_id}' has channels {sorted(files)}, "
                f"dataset.json declares {num_channels}."
            )
        channels = tuple(clean_image(read_image(files[c])) for c in range(num_channels))
        label_path = root / f"labels{split}" / f"{case_id}{ending}"
        label = (
            to_uint8_label(read_image(label_path), str(label_path), len(labels))
            if label_path.is_file()
            else None
        )
        yield ConvertedCase(
            case_id,
            channels,
            label,
            diagnoses.get(case_id),
            str(files[0]),
            split=split,
            label_source=str(label_path) if label is not None else "",
        )


def convert_nnunet(
    source: Path,
    out_dir: Path,
    *,
    diagnoses_csv: Path | None = None,
    classes: list[str] | None = None,
    case_column: str = "case",
    diagnosis_column: str = "diagnosis",
    overwrite: bool = False,
) -> dict[str, int]:
    """Convert the nnU-Net v2 raw dataset ``source`` (imagesTr, labelsTr, optional imagesTs).

    Args:
        diagnoses_csv: optional CSV with a case and a diagnosis column.
        classes: diagnosis names in output order; default: as first met in the CSV.

    Raises:
        ConversionError: unsupported labels, unknown cases or diagnoses in the CSV.
    """
    source = Path(source)
    json_path = source / "dataset.json"
    meta = read_json(json_path)
    if not isinstance(meta, dict):
        raise ConversionError(f"{json_path}: must hold a JSON object.")
    labels = _labels_from_nnunet(meta, json_path)
    channels = _channels_from_nnunet(meta, json_path)
    ending = str(meta.get("file_ending", ".nii.gz"))
    diagnoses: dict[str, str] = {}
    if diagnoses_csv is not None:
        diagnoses = read_diagnoses(Path(diagnoses_csv), case_column, diagnosis_column)
        found = dict.fromkeys(diagnoses.values())
        classes = classes or list(found)
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise ConversionError(
                f"{diagnoses_csv}: diagnoses {unknown} are not in --classes {classes}."
            )
        if len(classes) < 2:
            raise ConversionError(
                f"{diagnoses_csv}: at least two diagnosis classes are needed, found {classes}."
            )
        ids = {
            p.name[: -len(ending) - 5]
            for split in ("Tr", "Ts")
            for p in (source / f"images{split}").glob(f"*_0000{ending}")
        }
        missing = sorted(set(diagnoses) - ids)
        if missing:
            raise ConversionError(
                f"{diagnoses_csv}: cases {missing[:5]} have no image in {source}/imagesTr."
            )

    def cases() -> Iterator[ConvertedCase]:
        for split in ("Tr", "Ts"):
            yield from _cases(source, split, ending, len(channels), labels, diagnoses)

    return write_raw_dataset(
        out_dir,
        cases(),
        labels=labels,
        classes=classes or [],
        channel_names=channels,
        name=str(meta.get("name", source.name)),
        description=f"converted from the nnU-Net v2 raw dataset {source.name}"
        + (f" with diagnoses from {Path(diagnoses_csv).name}" if diagnoses_csv else ""),
        overwrite=overwrite,
    )


def main(argv: list[str] | None = None) -> int:
    """``autojoint_convert_nnunet``: see ``--help``."""
    parser = argparse.ArgumentParser(
        prog="autojoint_convert_nnunet",
        description="Convert an nnU-Net v2 raw dataset (dataset.json, imagesTr, labelsTr, "
        "optional imagesTs/labelsTs) into an autojoint raw dataset, adding diagnoses from "
        "an optional CSV.",
    )
    parser.add_argument("-i", "--input", required=True, type=Path, help="nnU-Net raw dataset")
    add_common_arguments(parser)
    parser.add_argument("--diagnoses", type=Path, default=None, help="CSV of diagnoses")
    parser.add_argument("--case-column", default="case", help="CSV case column (default case)")
    parser.add_argument(
        "--diagnosis-column", default="diagnosis", help="CSV diagnosis column (default diagnosis)"
    )
    parser.add_argument(
        "--classes", nargs="+", default=None, help="diagnosis names in order (default: as in CSV)"
    )
    args = parser.parse_args(argv)
    return run_converter(
        parser,
        lambda: convert_nnunet(
            args.input,
            args.output,
            diagnoses_csv=args.diagnoses,
            classes=args.classes,
            case_column=args.case_column,
            diagnosis_column=args.diagnosis_column,
            overwrite=args.overwrite,
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
