"""The folder-level tables of a prediction (``diagnoses.csv``, ``diagnoses.json``,
``lesion_volumes.csv``, ``failures.csv``), rebuilt from the per-case records.

The tables own no data: each is a function of the records ``CASE.json`` and
``failed/CASE.json`` of the input folder's cases. That is what keeps them right when the
parts of a split prediction (``--num-parts``) finish in any order, or at once, on machines
that share only the output folder: every part rebuilds them when it ends, and
:func:`rebuild_folder_tables` repeats until the tables on disk match the records it reads
after writing them. Whichever part checks last therefore leaves the tables of every record
that exists, and a part's records all exist before it starts rebuilding. No lock is
needed, only the atomic rename every write already uses.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autojoint.inference.outputs import (
    FAILED_DIR,
    CaseFailure,
    read_failure,
    read_record,
    record_path,
)
from autojoint.io.files import atomic_write, json_text
from autojoint.planning.schema import Plan

logger = logging.getLogger(__name__)

DIAGNOSES_CSV = "diagnoses.csv"
DIAGNOSES_JSON = "diagnoses.json"
VOLUMES_CSV = "lesion_volumes.csv"
FAILURES_CSV = "failures.csv"
CALIBRATED = "calibrated_probabilities"  # the record's key (inference.adjustments)
CALIBRATED_PREFIX = "pcal_"  # diagnoses.csv columns of calibrated probabilities

# Rounds of "write, then re-read the records" before giving up. One suffices unless parts
# write records meanwhile; each round is a few file reads per case.
MAX_ROUNDS = 20

_SUMMARY_KEYS = (
    "case",
    "diagnosis",
    "probabilities",
    "fold_agreement",
    "fold_probabilities",
    "calibrated_probabilities",
    "volumes",
)


def _fmt(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _volume_columns(plan: Plan) -> list[str]:
    lesions = [f"volume_ml_{n}" for n, v in sorted(plan.labels.items(), key=lambda x: x[1]) if v]
    return [*lesions, "volume_ml_lesion", "lung_volume_ml", "lung_involvement"]


def _volume_cells(record: dict[str, Any], plan: Plan) -> list[str]:
    vol = record.get("volumes", {})
    return [_fmt(vol.get(c), 6 if c == "lung_involvement" else 3) for c in _volume_columns(plan)]


def _csv_text(header: list[str], rows: list[list[str]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def table_texts(
    records: Sequence[dict[str, Any]],
    failures: Sequence[CaseFailure],
    plan: Plan,
    folds: Sequence[str],
) -> dict[str, str | None]:
    """File name -> text of each folder table, rows in the order given; None = the file
    must not exist (``failures.csv`` without failures).

    ``diagnoses.csv`` + ``diagnoses.json`` for plans with classes, ``lesion_volumes.csv``
    for segmentation-only plans, and ``failures.csv`` (case,file,reason).
    """
    texts: dict[str, str | None] = {
        FAILURES_CSV: _csv_text(
            ["case", "file", "reason"], [[f.case_id, f.path, f.reason] for f in failures]
        )
        if failures
        else None
    }
    if not plan.has_diagnosis:
        texts[VOLUMES_CSV] = _csv_text(
            ["case", *_volume_columns(plan)],
            [[r["case"], *_volume_cells(r, plan)] for r in records],
        )
        return texts
    header = ["case", "diagnosis", *[f"p_{c}" for c in plan.classes], *_volume_columns(plan)]
    rows = [
        [
            r["case"],
            r["diagnosis"],
            *[f"{r['probabilities'][c]:.6f}" for c in plan.classes],
            *_volume_cells(r, plan),
        ]
        for r in records
    ]
    # Calibrated probabilities come last, so the columns of earlier versions keep their
    # places; empty cells for a record predicted without a calibration.
    if any(CALIBRATED in r for r in records):
        header += [f"{CALIBRATED_PREFIX}{c}" for c in plan.classes]
        for row, r in zip(rows, records, strict=True):
            cal = r.get(CALIBRATED) or {}
            row += [_fmt(cal.get(c), 6) for c in plan.classes]
    texts[DIAGNOSES_CSV] = _csv_text(header, rows)
    texts[DIAGNOSES_JSON] = json_text(
        {
            "classes": list(plan.classes),
            "folds": list(folds),
            "cases": [{k: r[k] for k in _SUMMARY_KEYS if k in r} for r in records],
        }
    )
    return texts


def _fits(record: dict[str, Any], plan: Plan) -> bool:
    """A record this plan's tables can show (a diagnosis for each of its classes)."""
    if not plan.has_diagnosis:
        return True
    probs = record.get("probabilities")
    return "diagnosis" in record and isinstance(probs, dict) and set(plan.classes) <= set(probs)


def folder_state(
    out_dir: Path, case_ids: Sequence[str], plan: Plan
) -> tuple[list[dict[str, Any]], list[CaseFailure], list[str]]:
    """The records of the complete cases, the failures of the others (in ``case_ids``'
    order), and the records that could not be used (a warning each)."""
    records, failures, unusable = [], [], []
    for case_id in case_ids:
        if record_path(out_dir, case_id).is_file():
            try:
                record = read_record(out_dir, case_id)
            except FileNotFoundError:  # replaced or removed meanwhile: read it next round
                pass
            except ValueError as err:
                unusable.append(str(err))
            else:
                if _fits(record, plan):
                    records.append(record)
                    continue
                unusable.append(
                    f"{record_path(out_dir, case_id)}: was written by a model without these "
                    f"diagnosis classes ({', '.join(plan.classes)}); predict the case again."
                )
        if (failure := read_failure(out_dir, case_id)) is not None:
            failures.append(failure)
    return records, failures, unusable


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def _put(path: Path, text: str | None) -> None:
    """Make ``path`` hold ``text`` (None: not exist); a file already right is not touched."""
    if _read_text(path) == text:
        return
    if text is None:
        path.unlink(missing_ok=True)
    else:
        atomic_write(path, lambda fh: fh.write(text))


def _remove_stale_failures(out_dir: Path, case_ids: Sequence[str], *, is_shared: bool) -> None:
    """Failure records of cases no longer in the input folder, and the emptied folder
    unless another part may be about to write a record into it."""
    folder = out_dir / FAILED_DIR
    if not folder.is_dir():
        return
    wanted = {f"{c}.json" for c in case_ids}
    for path in folder.iterdir():
        if path.name.endswith(".json") and path.name not in wanted:
            path.unlink(missing_ok=True)
    if not is_shared and not any(folder.iterdir()):
        folder.rmdir()


def rebuild_folder_tables(
    out_dir: Path,
    case_ids: Sequence[str],
    plan: Plan,
    folds: Sequence[str],
    *,
    is_shared: bool = False,
) -> None:
    """Rewrite the folder tables from the records of ``case_ids`` (every case of the input
    folder, in table order) until a re-read of the records gives what is on disk.

    Args:
        is_shared: other processes (parts) may write into ``out_dir`` meanwhile.
    """
    out_dir = Path(out_dir)
    _remove_stale_failures(out_dir, case_ids, is_shared=is_shared)
    for _ in range(MAX_ROUNDS):
        records, failures, unusable = folder_state(out_dir, case_ids, plan)
        texts = table_texts(records, failures, plan, folds)
        for name, text in texts.items():
            _put(out_dir / name, text)
        again = table_texts(*folder_state(out_dir, case_ids, plan)[:2], plan, folds)
        on_disk = {name: _read_text(out_dir / name) for name in texts}
        if again == texts == on_disk:
            for message in unusable:
                logger.warning("%s (left out of the tables)", message)
            return
    logger.warning(
        "%s: the case records kept changing while the tables were rebuilt; the last part "
        "to finish rebuilds them (or rerun with --continue).",
        out_dir,
    )
