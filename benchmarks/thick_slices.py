"""Thick slices: the all-axes spline against the separate thick-axis rule of
``autojoint.preprocessing.resample``, on real CT and real masks.

    python -m benchmarks.thick_slices [--data ../shared/data] [--out OUT.json]

Three measurements, each printing both rules side by side:

1. **HU between thick slices** (COVID-CT-MD P001, 2 mm): average every ``k`` consecutive
   slices into one slab of ``2k`` mm (what a thick reconstruction is), resample the slabs
   back to 2 mm and compare with the real 2 mm slices: RMSE in HU inside the body and the
   overshoot, how far a value leaves the range of the two slabs it lies between.
2. **Mask shape between thick slices** (TotalSegmentator's example, 3 mm organ labels):
   keep every ``k``-th slice (the centre of each slab), resample back to 3 mm, Dice per
   organ against the slices left out.
3. **There and back** (the 50 real MosMed masks, 8 mm): resample to the CPU plan's spacing
   (2.75 x 1.51 x 1.51 mm, measured in the speed issue) and back; Dice with the original and
   the seconds each way.

Only the resampling functions run; nothing is trained.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from autojoint.preprocessing.resample import (
    resample_image,
    resample_label,
    shape_for_spacing,
    thick_axis,
)

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CPU_PLAN_SPACING = (2.75, 1.51, 1.51)
RULES = ("all axes", "thick axis separate")
# image rules: name -> order across the thick axis (None: the all-axes cubic)
IMAGE_RULES = {"all axes cubic": None, "thick axis linear": 1, "thick axis cubic, clipped": 3}


def read_zyx(path: Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Array in (z, y, x) order with its spacing in the same order."""
    image = sitk.ReadImage(str(path))
    sx, sy, sz = image.GetSpacing()
    return sitk.GetArrayFromImage(image), (sz, sy, sx)


def slab_average(volume: np.ndarray, k: int) -> np.ndarray:
    """Mean of every ``k`` consecutive slices (the trailing remainder dropped)."""
    n = (volume.shape[0] // k) * k
    return volume[:n].reshape(n // k, k, *volume.shape[1:]).mean(axis=1)


def between_slab_range(slabs: np.ndarray, fine_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per output slice, the min and max of the two slabs whose centres bracket it."""
    k = fine_size / slabs.shape[0]
    centres = (np.arange(fine_size) + 0.5) / k - 0.5
    lo = np.clip(np.floor(centres), 0, slabs.shape[0] - 1).astype(int)
    hi = np.clip(lo + 1, 0, slabs.shape[0] - 1)
    return np.minimum(slabs[lo], slabs[hi]), np.maximum(slabs[lo], slabs[hi])


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def _image_rule(rule: str, spacing_old: tuple[float, ...], spacing_new: tuple[float, ...]):
    thick_order = IMAGE_RULES[rule]
    axis = None if thick_order is None else thick_axis(spacing_old, spacing_new)
    return lambda v, shape: resample_image(
        v[None], shape, separate_axis=axis, thick_order=thick_order or 3
    )[0]


def _label_rule(rule: str, spacing_old: tuple[float, ...], spacing_new: tuple[float, ...]):
    axis = thick_axis(spacing_old, spacing_new) if rule == RULES[1] else None
    return lambda s, shape, n: resample_label(s, shape, n, separate_axis=axis)


def hu_between_slabs(ct: Path, ks: tuple[int, ...] = (2, 3, 4)) -> list[dict]:
    volume, spacing = read_zyx(ct)
    rows = []
    for k in ks:
        n = (volume.shape[0] // k) * k
        truth = volume[:n].astype(np.float32)
        slabs = slab_average(truth, k)
        thick = (spacing[0] * k, spacing[1], spacing[2])
        body = truth > -500
        lo, hi = between_slab_range(slabs, n)
        for rule in IMAGE_RULES:
            resample = _image_rule(rule, thick, spacing)
            start = time.process_time()
            fine = resample(slabs, truth.shape)
            seconds = time.process_time() - start
            over = np.maximum(fine - hi, 0) + np.maximum(lo - fine, 0)
            rows.append(
                {
                    "slab mm": thick[0],
                    "rule": rule,
                    "RMSE HU (body)": float(np.sqrt(np.mean((fine - truth)[body] ** 2))),
                    "overshoot HU (mean, body)": float(over[body].mean()),
                    "voxels > 20 HU outside (%)": float(100 * (over > 20)[body].mean()),
                    "CPU seconds": seconds,
                }
            )
    return rows


def masks_between_slices(seg_path: Path, ks: tuple[int, ...] = (3, 5)) -> list[dict]:
    seg, spacing = read_zyx(seg_path)
    labels = [int(v) for v in np.unique(seg) if v > 0]
    remap = np.zeros(int(seg.max()) + 1, np.uint8)
    remap[labels] = np.arange(1, len(labels) + 1)
    seg = remap[seg]
    num = len(labels) + 1
    rows = []
    for k in ks:
        n = (seg.shape[0] // k) * k
        truth = seg[:n]
        kept = truth[k // 2 :: k]
        left_out = np.ones(n, bool)
        left_out[k // 2 :: k] = False
        thick = (spacing[0] * k, spacing[1], spacing[2])
        for rule in RULES:
            resample = _label_rule(rule, thick, spacing)
            start = time.process_time()
            fine = resample(kept, truth.shape, num)
            seconds = time.process_time() - start
            scores = [
                dice(fine[left_out] == v, truth[left_out] == v)
                for v in range(1, num)
                if (truth[left_out] == v).sum() >= 50
            ]
            rows.append(
                {
                    "slice mm": thick[0],
                    "rule": rule,
                    "organs": len(scores),
                    "Dice on left-out slices (mean)": float(np.mean(scores)),
                    "CPU seconds": seconds,
                }
            )
    return rows


def there_and_back(mask_dir: Path, limit: int | None = None) -> list[dict]:
    paths = sorted(mask_dir.glob("*.nii*"))[:limit]
    results: dict[str, dict[str, list[float]]] = {
        r: {"dice": [], "forward": [], "back": []} for r in RULES
    }
    for path in paths:
        seg, spacing = read_zyx(path)
        seg = (seg > 0).astype(np.uint8)
        if seg.sum() == 0:
            continue
        shape = shape_for_spacing(seg.shape, spacing, CPU_PLAN_SPACING)
        for rule in RULES:
            forward: Callable = _label_rule(rule, spacing, CPU_PLAN_SPACING)
            backward: Callable = _label_rule(rule, CPU_PLAN_SPACING, spacing)
            t0 = time.process_time()
            fine = forward(seg, shape, 2)
            t1 = time.process_time()
            back = backward(fine, seg.shape, 2)
            t2 = time.process_time()
            results[rule]["dice"].append(dice(back == 1, seg == 1))
            results[rule]["forward"].append(t1 - t0)
            results[rule]["back"].append(t2 - t1)
    return [
        {
            "rule": rule,
            "masks": len(r["dice"]),
            "Dice there-and-back (mean)": float(np.mean(r["dice"])),
            "Dice (min)": float(np.min(r["dice"])),
            "CPU s forward (mean)": float(np.mean(r["forward"])),
            "CPU s back (mean)": float(np.mean(r["back"])),
        }
        for rule, r in results.items()
    ]


def markdown(rows: list[dict]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        cells = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--masks", type=int, default=None, help="use only the first N MosMed masks")
    args = parser.parse_args(argv)
    data: Path = args.data
    if not data.is_dir():
        raise SystemExit(f"{data}: not found; pass --data pointing at ../shared/data")
    result = {
        "hu_between_slabs": hu_between_slabs(data / "covid_ct_md" / "nifti_ds2" / "P001.nii.gz"),
        "masks_between_slices": masks_between_slices(
            data / "totalsegmentator" / "tests" / "reference_files" / "example_seg.nii.gz"
        ),
        "there_and_back": there_and_back(data / "mosmed_masks" / "masks", args.masks),
    }
    for name, rows in result.items():
        print(f"\n## {name}\n\n{markdown(rows)}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
