"""Tiny NIfTI masks with exactly known metrics, shared by the evaluation and report tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

SHAPE = (8, 10, 12)  # (Z, Y, X)
SPACING_XYZ = (0.7, 0.8, 2.5)
ORIGIN = (-10.0, 5.0, 3.2)
DIRECTION = (1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
LABELS = {"ground_glass": 1, "consolidation": 2}


def write_mask(
    arr: np.ndarray,
    path: Path,
    spacing: tuple[float, ...] = SPACING_XYZ,
    origin: tuple[float, ...] = ORIGIN,
) -> None:
    """Write a uint8 mask on the shared grid (a flipped y axis, anisotropic spacing)."""
    img = sitk.GetImageFromArray(arr.astype(np.uint8))
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(DIRECTION)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path), useCompression=True)


def make_dataset(root: Path) -> tuple[Path, Path]:
    """Three cases with exactly known Dice.

    case_a: ground glass 16 ref voxels, prediction covers half -> 2*8/24 = 2/3;
            consolidation 8 voxels predicted exactly -> 1; lesion 2*16/40 = 0.8.
    case_b: ground glass predicted exactly -> 1; no consolidation anywhere -> NaN.
    case_c: empty reference and prediction -> every Dice NaN.
    """
    ref_dir, pred_dir = root / "ref", root / "pred"
    ref, pred = np.zeros(SHAPE, np.uint8), np.zeros(SHAPE, np.uint8)
    ref[2:4, 2:4, 2:6] = 1
    pred[2:4, 2:4, 2:4] = 1
    ref[5:7, 5:7, 5:7] = 2
    pred[5:7, 5:7, 5:7] = 2
    write_mask(ref, ref_dir / "case_a.nii.gz")
    write_mask(pred, pred_dir / "case_a.nii.gz")
    b = np.zeros(SHAPE, np.uint8)
    b[0:2, 0:2, 0:2] = 1
    write_mask(b, ref_dir / "case_b.nii.gz")
    write_mask(b, pred_dir / "case_b.nii.gz")
    write_mask(np.zeros(SHAPE), ref_dir / "case_c.nii.gz")
    write_mask(np.zeros(SHAPE), pred_dir / "case_c.nii.gz")
    return pred_dir, ref_dir


def write_csvs(root: Path, pred_dir: Path) -> Path:
    """Reference and predicted diagnoses of ``make_dataset``'s cases (one error, case_c);
    returns the reference CSV."""
    ref_csv = root / "ref_diagnoses.csv"
    ref_csv.write_text(
        "case,diagnosis\ncase_a,covid\ncase_b,normal\ncase_c,pneumonia\n", encoding="utf-8"
    )
    (pred_dir / "diagnoses.csv").write_text(
        "case,diagnosis,p_normal,p_covid,p_pneumonia\n"
        "case_a,covid,0.1,0.8,0.1\n"
        "case_b,normal,0.7,0.2,0.1\n"
        "case_c,covid,0.2,0.7,0.1\n",
        encoding="utf-8",
    )
    return ref_csv
