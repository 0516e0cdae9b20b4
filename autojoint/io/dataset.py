"""The raw dataset: nnU-Net v2 layout plus autojoint's two diagnosis extras.

Layout (see docs/dataset_format.md)::

    RAW/dataset.json            channel_names, labels, numTraining, file_ending
                                (+ optional "classes": list of diagnosis names)
    RAW/imagesTr/CASE_0000.nii.gz
    RAW/labelsTr/CASE.nii.gz    optional per case (a case may have only a diagnosis)
    RAW/diagnosesTr.csv         optional, header ``case,diagnosis``

A plain nnU-Net v2 dataset (no ``classes``, no CSV) is valid: segmentation only.
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from autojoint.io.files import read_json
from autojoint.io.paths import case_name_problem

logger = logging.getLogger(__name__)

DIAGNOSES_FILE = "diagnosesTr.csv"
# nnU-Net v2's name for "not annotated here, leave out of the loss" (sparse annotation).
# Supporting it means ignoring it in the losses, the fingerprint's lesion statistics, the
# foreground sampling and evaluation; until then it is refused, not trained as a lesion.
IGNORE_LABEL = "ignore"


class DatasetError(ValueError):
    """The raw dataset does not follow the documented layout."""


@dataclass(frozen=True)
class RawCase:
    """One training case: its channel files, optional mask and optional diagnosis."""

    case_id: str
    image_paths: tuple[Path, ...]
    label_path: Path | None
    diagnosis: str | None


@dataclass(frozen=True)
class RawDataset:
    """A validated raw dataset."""

    root: Path
    channel_names: dict[str, str]
    labels: dict[str, int]
    file_ending: str
    classes: tuple[str, ...]
    cases: tuple[RawCase, ...]

    @property
    def num_channels(self) -> int:
        return len(self.channel_names)

    @property
    def has_diagnoses(self) -> bool:
        return len(self.classes) > 0


def read_diagnoses_csv(
    path: Path, classes: tuple[str, ...] | None, problems: list[DatasetError] | None = None
) -> dict[str, str]:
    """Read a ``case,diagnosis`` CSV; unknown class names are an error naming the row.

    Args:
        path: the CSV file.
        classes: known diagnosis names (None: any name is accepted).
        problems: if given, bad rows are appended here and skipped instead of raising, so a
            check can report every bad row at once.

    Raises:
        DatasetError: (without ``problems``) the first bad row; a bad header always.
    """

    def bad(err: DatasetError) -> None:
        if problems is None:
            raise err
        problems.append(err)

    with open(path, newline="", encoding="utf-8-sig") as fh:  # a BOM from spreadsheets
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or [f.strip() for f in reader.fieldnames[:2]] != [
            "case",
            "diagnosis",
        ]:
            raise DatasetError(
                f"{path}: header must be 'case,diagnosis', found {reader.fieldnames}."
            )
        out: dict[str, str] = {}
        for line_no, row in enumerate(reader, start=2):
            case, diag = (row.get("case") or "").strip(), (row.get("diagnosis") or "").strip()
            if not case:
                bad(DatasetError(f"{path}:{line_no}: empty case id."))
                continue
            if not diag:
                continue  # a case without diagnosis is allowed (segmentation only)
            if classes is not None and diag not in classes:
                bad(
                    DatasetError(
                        f"{path}:{line_no}: unknown diagnosis '{diag}' for case '{case}'. "
                        f"Known classes (dataset.json 'classes'): {list(classes)}."
                    )
                )
                continue
            if case in out:
                bad(
                    DatasetError(
                        f"{path}:{line_no}: case '{case}' listed twice; keep one row per case."
                    )
                )
                continue
            out[case] = diag
    return out


def order_channels(
    files: dict[int, Path], num_channels: int, case_id: str, folder: Path
) -> tuple[Path, ...]:
    """Channel files of one case in channel order; every channel 0..C-1 must be present.

    Raises:
        DatasetError: a channel is missing or an extra one is present, or the case name
            cannot safely name files (see :mod:`autojoint.io.paths`).
    """
    problem = case_name_problem(case_id)
    if problem is not None:
        raise DatasetError(
            f"{folder}: case name {case_id!r} {problem}; rename its files with letters, "
            "digits, '_' or '-' only."
        )
    if sorted(files) != list(range(num_channels)):
        raise DatasetError(
            f"{folder}: case '{case_id}' has channels {sorted(files)}, expected "
            f"{list(range(num_channels))} (files CASE_0000, CASE_0001, ... as in channel_names)."
        )
    return tuple(files[c] for c in range(num_channels))


def _check_dataset_json(path: Path, meta: object) -> dict:
    if not isinstance(meta, dict):
        raise DatasetError(f"{path}: must hold a JSON object.")
    for key in ("channel_names", "labels", "file_ending"):
        if key not in meta:
            raise DatasetError(
                f"{path}: missing key '{key}'. Required: channel_names, labels, "
                "numTraining, file_ending (nnU-Net v2 dataset.json)."
            )
    labels = meta["labels"]
    if not isinstance(labels, dict) or labels.get("background") != 0:
        raise DatasetError(f"{path}: 'labels' must map names to ints with background = 0.")
    if IGNORE_LABEL in labels:
        raise DatasetError(
            f"{path}: label '{IGNORE_LABEL}' = {labels[IGNORE_LABEL]!r} is nnU-Net's ignore "
            "label (unannotated voxels, left out of the loss). autojoint does not support it "
            "yet and would train it as a lesion class. In every mask set those voxels to "
            "background (0) or to the lesion label they belong to, then delete "
            f"'{IGNORE_LABEL}' from 'labels'; or remove the masks of sparsely annotated cases "
            "from labelsTr/ (a case without a mask trains only the diagnosis)."
        )
    values = list(labels.values())
    if any(not isinstance(v, int) for v in values) or sorted(values) != list(range(len(values))):
        raise DatasetError(f"{path}: label values must be consecutive integers 0..K, got {labels}.")
    classes = meta.get("classes", [])
    if not isinstance(classes, list) or any(not isinstance(c, str) for c in classes):
        raise DatasetError(f"{path}: 'classes' must be a list of diagnosis names.")
    if len(set(classes)) != len(classes) or len(classes) == 1:
        raise DatasetError(f"{path}: 'classes' must hold at least two distinct names.")
    return meta


def load_raw_dataset(root: Path) -> RawDataset:
    """Find and validate every case of a raw dataset (headers are not read here).

    Raises:
        DatasetError: layout errors, naming the file and the fix (all of them, one per line).
    """
    dataset, problems = scan_raw_dataset(root)
    if problems or dataset is None:
        raise DatasetError("\n".join(str(p) for p in problems))
    return dataset


def scan_raw_dataset(root: Path) -> tuple[RawDataset | None, list[DatasetError]]:
    """Check the layout of a raw dataset and collect every problem instead of stopping.

    Returns:
        ``(dataset, problems)``: the cases that passed (None when dataset.json or imagesTr
        is unusable, as nothing else can be checked then) and every layout problem found.
    """
    root = Path(root)
    problems: list[DatasetError] = []
    json_path = root / "dataset.json"
    if not json_path.is_file():
        return None, [DatasetError(f"{json_path}: not found; {root} is not a raw dataset folder.")]
    try:
        meta = _check_dataset_json(json_path, read_json(json_path))
    except (DatasetError, ValueError) as err:  # ValueError: not JSON, not UTF-8
        message = str(err) if str(json_path) in str(err) else f"{json_path}: {err}"
        return None, [err if isinstance(err, DatasetError) else DatasetError(message)]
    ending: str = meta["file_ending"]
    channels = {str(k): str(v) for k, v in meta["channel_names"].items()}
    num_ch = len(channels)
    images_dir = root / "imagesTr"
    if not images_dir.is_dir():
        problems.append(
            DatasetError(f"{images_dir}: not found; put images there as CASE_0000{ending}.")
        )
        return None, problems
    pattern = re.compile(r"^(.+)_(\d{4})" + re.escape(ending) + "$")
    channel_files: dict[str, dict[int, Path]] = {}
    for p in sorted(images_dir.iterdir()):
        if p.name.startswith("."):
            continue
        m = pattern.match(p.name)
        if not m:
            problems.append(
                DatasetError(
                    f"{p}: unexpected file name; images must be named CASE_XXXX{ending} "
                    "(XXXX = 4-digit channel index)."
                )
            )
            continue
        channel_files.setdefault(m.group(1), {})[int(m.group(2))] = p
    if not channel_files and not problems:
        problems.append(DatasetError(f"{images_dir}: empty dataset (no CASE_0000{ending} images)."))
    by_folded: dict[str, list[str]] = {}
    for case_id in channel_files:
        by_folded.setdefault(case_id.casefold(), []).append(case_id)
    for names in by_folded.values():
        if len(names) > 1:
            problems.append(
                DatasetError(
                    f"{images_dir}: case names {sorted(names)} differ only in letter case; "
                    "their outputs would overwrite each other on case-insensitive file "
                    "systems. Rename one."
                )
            )

    classes = tuple(meta.get("classes", []))
    diag_path = root / DIAGNOSES_FILE
    diagnoses: dict[str, str] = {}
    if diag_path.is_file():
        if not classes:
            problems.append(
                DatasetError(
                    f"{diag_path}: diagnoses given but {json_path} has no 'classes' list; "
                    "add 'classes': [names...]."
                )
            )
        else:
            try:
                diagnoses = read_diagnoses_csv(diag_path, classes, problems)
            except DatasetError as err:
                problems.append(err)
            except (UnicodeDecodeError, csv.Error) as err:
                problems.append(
                    DatasetError(
                        f"{diag_path}: cannot be read as a CSV ({err}); save it as UTF-8 text "
                        "with the header 'case,diagnosis'."
                    )
                )
    elif classes:
        logger.warning("%s lists classes but %s is missing: no diagnoses", json_path, diag_path)
    unknown = sorted(set(diagnoses) - set(channel_files))
    if unknown:
        problems.append(
            DatasetError(
                f"{diag_path}: cases {unknown[:5]}{' ...' if len(unknown) > 5 else ''} have no "
                f"image in {images_dir}; add their CASE_0000{ending} or remove their rows."
            )
        )

    cases = []
    for case_id, files in sorted(channel_files.items()):
        try:
            paths = order_channels(files, num_ch, case_id, images_dir)
        except DatasetError as err:
            problems.append(err)
            continue
        label = root / "labelsTr" / f"{case_id}{ending}"
        cases.append(
            RawCase(
                case_id=case_id,
                image_paths=paths,
                label_path=label if label.is_file() else None,
                diagnosis=diagnoses.get(case_id),
            )
        )
    if "numTraining" in meta and meta["numTraining"] != len(channel_files):
        logger.warning(
            "%s: numTraining = %s but %d cases found in imagesTr; using the files found.",
            json_path,
            meta["numTraining"],
            len(channel_files),
        )
    if cases and all(c.label_path is None and c.diagnosis is None for c in cases):
        problems.append(DatasetError(f"{root}: no case has a mask in labelsTr/ nor a diagnosis."))
    dataset = RawDataset(
        root=root,
        channel_names=channels,
        labels={str(k): int(v) for k, v in meta["labels"].items()},
        file_ending=ending,
        classes=classes,
        cases=tuple(cases),
    )
    return dataset, problems


def is_ct(channel_names: dict[str, str]) -> bool:
    """nnU-Net's convention: a channel named 'CT' holds Hounsfield units."""
    return any(name.strip().upper() == "CT" for name in channel_names.values())


def ct_channel_index(channel_names: dict[str, str]) -> int | None:
    """Position of the 'CT' channel in channel order (keys "0", "1", ...), None without one."""
    ordered = sorted(channel_names.items(), key=lambda kv: int(kv[0]))
    for i, (_, name) in enumerate(ordered):
        if name.strip().upper() == "CT":
            return i
    return None
