"""Workload 2 with the diagnosis gate (autojoint's ``evaluation.diagnosis_gate``) applied
to each tool's cached predictions: the mask of a validation case called a lesion-free
class is emptied, a lesion-free class being one whose every *training* case of the fold
has an empty reference mask (autojoint's rule, so nothing of the validation cases is used).
autojoint is gated by its own classification head, nnU-Net by the two-step diagnosis of
its own masks: each tool's masks with the diagnosis a user of that tool would have.

Here the gate is applied to every fold unconditionally, so both tools are compared under
one fixed rule; ``autojoint_find_best_configuration`` keeps it only where it raised the
pooled cross-validation Dice (the gains per fold below show whether it would).
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from autojoint.evaluation.diagnosis_gate import GateCase, lesion_free_classes
from autojoint.io.dataset import RawDataset
from benchmarks.peers.joint3d_scoring import score

SEGMENTATION_COLUMNS = (
    "Dice lesion",
    "Dice GGO",
    "Dice consolidation",
    "precision lesion",
    "recall lesion",
)


def training_lesion_free_classes(dataset: RawDataset, train: list[str]) -> tuple[str, ...]:
    """The classes whose every training case (of one fold) has an empty reference mask."""
    cases = {c.case_id: c for c in dataset.cases}
    rows = []
    for case_id in train:
        case = cases[case_id]
        if case.label_path is None:
            raise SystemExit(f"{dataset.root}: {case_id} has no mask; regenerate the data")
        mask = sitk.GetArrayFromImage(sitk.ReadImage(str(case.label_path)))
        rows.append(GateCase(case.diagnosis, None, math.nan, not bool(np.any(mask > 0))))
    return lesion_free_classes(rows)


def read_called(diagnoses_csv: Path) -> dict[str, str]:
    """``case -> diagnosis`` of a predictor-style diagnoses CSV."""
    with open(diagnoses_csv, newline="", encoding="utf-8") as fh:
        return {row["case"]: row["diagnosis"] for row in csv.DictReader(fh)}


def write_gated_masks(
    pred_dir: Path, called: dict[str, str], gated: tuple[str, ...], out_dir: Path
) -> list[str]:
    """``out_dir``: every ``CASE.nii.gz`` of ``pred_dir``, emptied (same geometry) for a
    case called one of ``gated``, else a link to the original; returns the emptied cases."""
    out_dir.mkdir(parents=True, exist_ok=True)
    emptied = []
    for path in sorted(pred_dir.glob("*.nii.gz")):
        case = path.name[: -len(".nii.gz")]
        target = out_dir / path.name
        if target.is_symlink() or target.exists():
            target.unlink()
        if called.get(case) not in gated:
            os.symlink(path.resolve(), target)
            continue
        image = sitk.ReadImage(str(path))
        empty = sitk.GetImageFromArray(np.zeros_like(sitk.GetArrayFromImage(image)))
        empty.CopyInformation(image)
        tmp = out_dir / f".tmp_{path.name}"
        sitk.WriteImage(empty, str(tmp))
        os.replace(tmp, target)
        emptied.append(case)
    return emptied


def gated_row(
    dataset: RawDataset,
    split: dict[str, list[str]],
    pred_dir: Path,
    diagnoses_csv: Path,
    labels_dir: Path,
    ref_diagnoses_csv: Path,
    out_dir: Path,
) -> dict[str, Any]:
    """One tool's gated segmentation scores on one fold: ``{"scores": {column: value},
    "classes": gated classes, "emptied": cases, "emptied_with_lesions": cases}``."""
    gated = training_lesion_free_classes(dataset, split["train"])
    emptied = write_gated_masks(pred_dir, read_called(diagnoses_csv), gated, out_dir)
    row = score(
        out_dir,
        labels_dir,
        ref_diagnoses_csv=ref_diagnoses_csv,
        pred_diagnoses_csv=diagnoses_csv,
        dataset=dataset,
    )
    with_lesions = []
    for case in emptied:
        ref = sitk.ReadImage(str(labels_dir / f"{case}.nii.gz"))
        if np.any(sitk.GetArrayFromImage(ref) > 0):
            with_lesions.append(case)
    return {
        "scores": {c: row["scores"][c] for c in SEGMENTATION_COLUMNS},
        "classes": list(gated),
        "emptied": emptied,
        "emptied_with_lesions": with_lesions,
    }
