"""Tiny synthetic raw datasets for tests: anisotropic spacing, a flipped direction, two
lesion labels and one empty case. Fast to write, small enough for CPU training steps."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

CLASSES = ["COVID-19", "CAP", "normal"]
LABELS = {"background": 0, "ground_glass": 1, "consolidation": 2}


def write_volume(
    array: np.ndarray,
    path: Path,
    spacing_zyx=(2.5, 0.8, 0.8),
    origin=(0.0, 0.0, 0.0),
    direction=(1, 0, 0, 0, 1, 0, 0, 0, 1),
) -> None:
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(tuple(float(s) for s in reversed(spacing_zyx)))
    img.SetOrigin(origin)
    img.SetDirection(tuple(float(d) for d in direction))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path))


def make_case(
    rng: np.random.Generator, diagnosis: str, shape=(12, 40, 40)
) -> tuple[np.ndarray, np.ndarray]:
    """A box of air around a 'body' with a dark 'lung' and lesions whose kind depends on
    the diagnosis (COVID: several ground-glass blobs; CAP: one consolidation; normal: none)."""
    z, y, x = np.indices(shape)
    img = np.full(shape, -1000.0, np.float32)
    body = ((y - shape[1] / 2) / (shape[1] * 0.42)) ** 2 + (
        (x - shape[2] / 2) / (shape[2] * 0.42)
    ) ** 2 < 1
    img[body] = 40.0
    lung = ((y - shape[1] / 2) / (shape[1] * 0.3)) ** 2 + (
        (x - shape[2] / 2) / (shape[2] * 0.32)
    ) ** 2 < 1
    img[lung] = -850.0
    seg = np.zeros(shape, np.uint8)
    n = {"COVID-19": 3, "CAP": 1, "normal": 0}[diagnosis]
    lung_idx = np.argwhere(lung)
    for _ in range(n):
        c = lung_idx[rng.integers(len(lung_idx))]
        r = 3.0 if diagnosis == "CAP" else 2.0
        blob = ((z - c[0]) / (r / 2)) ** 2 + ((y - c[1]) / r) ** 2 + ((x - c[2]) / r) ** 2 < 1
        blob &= lung
        if diagnosis == "CAP":
            img[blob] = 30.0
            seg[blob] = 2
        else:
            img[blob] = -650.0
            seg[blob] = 1
    img += rng.normal(0, 15, shape).astype(np.float32)
    return img.astype(np.int16), seg


def make_raw_dataset(
    root: Path,
    num_cases: int = 6,
    *,
    with_diagnoses: bool = True,
    seed: int = 0,
    shape=(12, 40, 40),
    flip_case: int | None = 1,
) -> Path:
    """Write an nnU-Net v2 raw dataset (plus diagnoses) into ``root``; returns ``root``."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(num_cases):
        case = f"case_{i:03d}"
        diag = CLASSES[i % 3]
        img, seg = make_case(rng, diag, shape)
        direction = (-1, 0, 0, 0, -1, 0, 0, 0, 1) if i == flip_case else (1, 0, 0, 0, 1, 0, 0, 0, 1)
        spacing = (2.5 + 0.5 * (i % 2), 0.8, 0.8)
        origin = (10.0 * i, -5.0, 3.0)
        write_volume(img, root / "imagesTr" / f"{case}_0000.nii.gz", spacing, origin, direction)
        write_volume(seg, root / "labelsTr" / f"{case}.nii.gz", spacing, origin, direction)
        rows.append((case, diag))
    meta = {
        "channel_names": {"0": "CT"},
        "labels": LABELS,
        "numTraining": num_cases,
        "file_ending": ".nii.gz",
    }
    if with_diagnoses:
        meta["classes"] = CLASSES
        with open(root / "diagnosesTr.csv", "w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["case", "diagnosis"])
            w.writerows(rows)
    (root / "dataset.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return root


def write_slice(
    array: np.ndarray,
    path: Path,
    spacing_yx=(0.7, 0.7),
    origin=(0.0, 0.0),
    direction=(1, 0, 0, 1),
) -> None:
    """Write a 2D image ``(Y, X)`` (one CT slice) as a 2D NIfTI."""
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(tuple(float(s) for s in reversed(spacing_yx)))
    img.SetOrigin(tuple(float(o) for o in origin))
    img.SetDirection(tuple(float(d) for d in direction))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path))


def make_raw_dataset_2d(
    root: Path, num_cases: int = 6, *, seed: int = 0, shape=(40, 40), flip_case: int | None = 1
) -> Path:
    """Like :func:`make_raw_dataset` with 2D slices (MSD-Net-style data): 2D NIfTI images
    and masks, in-plane spacing 0.7 mm, one case with a flipped direction, diagnoses."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(num_cases):
        case = f"slice_{i:03d}"
        diag = CLASSES[i % 3]
        img, seg = make_case(rng, diag, (1, *shape))
        direction = (-1, 0, 0, -1) if i == flip_case else (1, 0, 0, 1)
        origin = (4.0 * i, -5.0)
        write_slice(
            img[0], root / "imagesTr" / f"{case}_0000.nii.gz", origin=origin, direction=direction
        )
        write_slice(
            seg[0], root / "labelsTr" / f"{case}.nii.gz", origin=origin, direction=direction
        )
        rows.append((case, diag))
    meta = {
        "channel_names": {"0": "CT"},
        "labels": LABELS,
        "numTraining": num_cases,
        "file_ending": ".nii.gz",
        "classes": CLASSES,
    }
    with open(root / "diagnosesTr.csv", "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["case", "diagnosis"])
        w.writerows(rows)
    (root / "dataset.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return root
