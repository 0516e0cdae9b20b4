"""What the predictor writes, where, and how a later run knows a case is complete.

A predicted case (:class:`CasePrediction`) becomes its files with :func:`write_case` and
its record with :func:`case_record`.

Every file is written atomically (temp file + rename), and the per-case record
``CASE.json`` is written last: its existence (with the other requested outputs) means the
case is complete, which is what ``--continue`` relies on. A case that fails gets a failure
record ``failed/CASE.json`` instead (and loses an earlier run's ``CASE.json``). The
folder-level tables (``diagnoses.csv``, ``diagnoses.json``, ``lesion_volumes.csv``,
``failures.csv``) hold nothing of their own: ``folder_tables`` rebuilds them from these
per-case records, which is what lets several parts of a split prediction share a folder.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autojoint.inference.dicom_seg import DICOM_SEG, SegSource, write_dicom_seg
from autojoint.inference.lung import lesion_volumes
from autojoint.inference.montage import write_montage
from autojoint.io.dataset import is_ct
from autojoint.io.files import atomic_write, read_json, write_json
from autojoint.io.image_io import ImageGeometry, write_image
from autojoint.planning.schema import Plan

logger = logging.getLogger(__name__)

FAILED_DIR = "failed"  # failure records, one per failed case
NIFTI = "nifti"
OUTPUT_FORMATS = (NIFTI, DICOM_SEG)  # --output-format: how the mask is written


@dataclass(frozen=True)
class CaseFailure:
    """A case that could not be predicted: which file, and why."""

    case_id: str
    path: str
    reason: str


@dataclass(frozen=True)
class CasePrediction:
    """What the predictor produces for one case, on the input grid.

    ``diagnosis_probs`` is the fold mean, ``fold_diagnosis_probs`` ``(F, num_classes)`` each fold's;
    ``lesion_probs`` ``(K, Z, Y, X)`` per-label probabilities (when asked for); ``image``
    the first input channel (for the lung estimate and the montage);
    ``mask_emptied_by_diagnosis`` the diagnosis whose gate emptied the mask
    (``inference.adjustments.gate_prediction``), None when none did.
    """

    mask: np.ndarray
    diagnosis_probs: np.ndarray | None
    geometry: ImageGeometry
    evidence: np.ndarray | None
    fold_diagnosis_probs: np.ndarray | None = None
    lesion_probs: np.ndarray | None = None
    image: np.ndarray | None = None
    timing: dict[str, float] = field(default_factory=dict)
    mask_emptied_by_diagnosis: str | None = None


def mask_path(out_dir: Path, case_id: str) -> Path:
    return Path(out_dir) / f"{case_id}.nii.gz"


def dicom_seg_path(out_dir: Path, case_id: str) -> Path:
    return Path(out_dir) / f"{case_id}_seg.dcm"


def evidence_path(out_dir: Path, case_id: str) -> Path:
    return Path(out_dir) / f"{case_id}_evidence.nii.gz"


def montage_path(out_dir: Path, case_id: str) -> Path:
    return Path(out_dir) / f"{case_id}_evidence.png"


def probabilities_path(out_dir: Path, case_id: str) -> Path:
    return Path(out_dir) / f"{case_id}_probabilities.npz"


def record_path(out_dir: Path, case_id: str) -> Path:
    return Path(out_dir) / f"{case_id}.json"


def failure_path(out_dir: Path, case_id: str) -> Path:
    """The failure record of a case; in a sub-folder, so it never takes a case's name."""
    return Path(out_dir) / FAILED_DIR / f"{case_id}.json"


def expected_outputs(
    out_dir: Path,
    case_id: str,
    *,
    evidence: bool,
    probabilities: bool,
    formats: Sequence[str] = (NIFTI,),
) -> list[Path]:
    """Every file one case produces with these options; the record comes last."""
    paths = [mask_path(out_dir, case_id)] if NIFTI in formats else []
    if DICOM_SEG in formats:
        paths.append(dicom_seg_path(out_dir, case_id))
    if evidence:
        paths += [evidence_path(out_dir, case_id), montage_path(out_dir, case_id)]
    if probabilities:
        paths.append(probabilities_path(out_dir, case_id))
    return [*paths, record_path(out_dir, case_id)]


def is_complete(
    out_dir: Path,
    case_id: str,
    *,
    evidence: bool,
    probabilities: bool,
    formats: Sequence[str] = (NIFTI,),
) -> bool:
    """True if an earlier run wrote every output this run would write for the case."""
    paths = expected_outputs(
        out_dir, case_id, evidence=evidence, probabilities=probabilities, formats=formats
    )
    return all(p.is_file() for p in paths)


def write_probabilities(
    path: Path, probs: np.ndarray, geometry: ImageGeometry, label_names: Sequence[str]
) -> None:
    """``CASE_probabilities.npz`` (zip-compressed): ``probabilities`` float16 ``(K, Z, Y, X)``
    on the input grid (index = label value, background first), ``labels``, and the grid
    (``spacing`` zyx mm, ``origin``/``direction`` ITK order) to place it in space."""
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        probabilities=probs.astype(np.float16),
        labels=np.array(list(label_names)),
        spacing=np.array(geometry.spacing),
        origin=np.array(geometry.origin),
        direction=np.array(geometry.direction),
    )
    atomic_write(path, lambda fh: fh.write(buf.getvalue()), binary=True)


def write_record(out_dir: Path, record: dict[str, Any]) -> None:
    write_json(record, record_path(out_dir, record["case"]))


def read_record(out_dir: Path, case_id: str) -> dict[str, Any]:
    """The record ``CASE.json`` of a complete case.

    Raises:
        FileNotFoundError: no record (the case is not complete).
        ValueError: the file is not a record of this case.
    """
    record = read_json(record_path(out_dir, case_id))
    if not isinstance(record, dict) or record.get("case") != case_id:
        raise ValueError(f"{record_path(out_dir, case_id)}: not a case record; delete it.")
    return record


def record_failure(out_dir: Path, failure: CaseFailure) -> None:
    """Mark a case failed: drop an earlier run's record first (so no table lists the case
    as predicted), then write ``failed/CASE.json``."""
    record_path(out_dir, failure.case_id).unlink(missing_ok=True)
    write_json(
        {"case": failure.case_id, "file": failure.path, "reason": failure.reason},
        failure_path(out_dir, failure.case_id),
    )


def clear_failure(out_dir: Path, case_id: str) -> None:
    """Forget an earlier failure of a case that is now complete."""
    failure_path(out_dir, case_id).unlink(missing_ok=True)


def read_failure(out_dir: Path, case_id: str) -> CaseFailure | None:
    """The failure record of a case, None when there is none or it is unreadable (a
    failure is retried by the next run anyway)."""
    path = failure_path(out_dir, case_id)
    try:
        data = read_json(path)
    except (FileNotFoundError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("case") != case_id:
        return None
    return CaseFailure(case_id, str(data.get("file", "")), str(data.get("reason", "")))


def case_record(
    case_id: str, inputs: Sequence[Path], result: CasePrediction, plan: Plan, folds: Sequence[str]
) -> dict[str, Any]:
    """The record ``CASE.json`` of a predicted case: inputs, lesion volumes and, with
    diagnosis classes, the diagnosis, its probabilities and the folds' agreement."""
    ct = result.image if is_ct(plan.channel_names) else None
    record: dict[str, Any] = {
        "case": case_id,
        "inputs": [str(p) for p in inputs],
        "volumes": lesion_volumes(result.mask, result.geometry, plan.labels, ct),
    }
    if result.diagnosis_probs is not None and result.fold_diagnosis_probs is not None:
        winner = int(np.argmax(result.diagnosis_probs))
        votes = np.argmax(result.fold_diagnosis_probs, axis=1)
        record.update(
            diagnosis=plan.classes[winner],
            probabilities={
                c: float(p) for c, p in zip(plan.classes, result.diagnosis_probs, strict=True)
            },
            fold_agreement=float(np.mean(votes == winner)),
            fold_probabilities={
                f: {c: float(p) for c, p in zip(plan.classes, fp, strict=True)}
                for f, fp in zip(folds, result.fold_diagnosis_probs, strict=True)
            },
        )
    if result.mask_emptied_by_diagnosis is not None:
        record["mask_emptied_by_diagnosis"] = result.mask_emptied_by_diagnosis
    return record


def write_case(
    out_dir: Path,
    case_id: str,
    result: CasePrediction,
    plan: Plan,
    record: dict[str, Any],
    *,
    nifti: bool = True,
    seg_source: SegSource | None = None,
) -> None:
    """Every output of one case, the record last (it marks the case complete); then an
    earlier failure record of the case is removed.

    Args:
        nifti: write the mask as ``CASE.nii.gz``.
        seg_source: write the mask as ``CASE_seg.dcm``, a DICOM-SEG referencing these
            source slices (``inference.dicom_seg``).
    """
    if nifti:
        write_image(result.mask, result.geometry, mask_path(out_dir, case_id))
    if seg_source is not None:
        label_names = {v: k for k, v in plan.labels.items() if v > 0}
        write_dicom_seg(dicom_seg_path(out_dir, case_id), result.mask, seg_source, label_names)
    if result.evidence is not None:
        write_image(result.evidence, result.geometry, evidence_path(out_dir, case_id))
        assert result.image is not None
        title = case_id
        if "diagnosis" in record:
            p = record["probabilities"][record["diagnosis"]]
            title += f": {record['diagnosis']} (p = {p:.2f})"
        write_montage(
            montage_path(out_dir, case_id),
            result.image,
            result.mask,
            result.evidence,
            result.geometry,
            title=title,
            label_names={v: k for k, v in plan.labels.items() if v > 0},
            is_ct=is_ct(plan.channel_names),
        )
    if result.lesion_probs is not None:
        names = [k for k, _ in sorted(plan.labels.items(), key=lambda kv: kv[1])]
        write_probabilities(
            probabilities_path(out_dir, case_id), result.lesion_probs, result.geometry, names
        )
    write_record(out_dir, record)
    clear_failure(out_dir, case_id)
