"""Print the plans autojoint makes for reference inputs, side by side (Markdown table).

Inputs (the closing table of the planner issue):
  * hand-made fingerprints: isotropic, anisotropic, tiny dataset, huge scans, a thick axis
    stored last, 2D slices (MSD-Net-like 512^2 at 0.7 mm; Inf-Net-like JPG slices at 1 mm),
    planned for an 8 GB GPU (segmentation only and joint) and the CPU profile, next to
    nnU-Net v2.8.1's 8 GB reference plans where known;
  * the demo dataset (generated as scripts/demo.sh does: 24 cases, 100 mm field of view);
  * the real chest CTs in ../shared/data/covid_ct_md and the real 2D slices in
    ../shared/data/infnet_semiseg (skipped when absent);
  * any further raw dataset given with --dataset.

    python -m benchmarks.plan_table [--dataset RAW_DIR ...] [--shared-data DIR] [--no-demo]
    python -m benchmarks.plan_table --device-sizes [8 24 40 80 141]

``--device-sizes`` prints instead how the plan of one chest-CT fingerprint
(``tests.fingerprints.chest_ct_fingerprint``) grows with the CUDA device's memory, each
size less the planner's headroom (``planner.usable_budget_gb``): the table of
docs/planning.md, "Plans by device size".

Run it as a module from the repository root: it reuses the hand-made fingerprints of
``tests/fingerprints.py``, and ``tests`` is importable from there, not installed.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from autojoint.fingerprint.compute import compute_fingerprint
from autojoint.fingerprint.schema import Fingerprint
from autojoint.io.dataset import load_raw_dataset
from autojoint.io.image_io import SLICE_SPACING_2D_MM
from autojoint.planning.planner import CPU_PROFILE_BUDGET_GB, plan_experiment, usable_budget_gb
from autojoint.planning.schema import Plan
from dataset_conversion.generate_demo import generate_dataset
from tests.fingerprints import chest_ct_fingerprint, make_fingerprint

NNUNET_8GB = {
    "isotropic 1 mm, 300^3": "128 x 128 x 128, batch 2",
    "anisotropic (3, 0.8, 0.8) mm, 100 x 400 x 400": "56 x 192 x 192, batch 2",
}
CASES = {
    "isotropic 1 mm, 300^3": ((1.0, 1.0, 1.0), (300, 300, 300)),
    "anisotropic (3, 0.8, 0.8) mm, 100 x 400 x 400": ((3.0, 0.8, 0.8), (100, 400, 400)),
    "tiny 2 mm, 12 x 40 x 40": ((2.0, 0.8, 0.8), (12, 40, 40)),
    "huge 0.7 mm, 500^3": ((0.7, 0.7, 0.7), (500, 500, 500)),
    "thick-slice x axis (0.8, 0.8, 5) mm": ((0.8, 0.8, 5.0), (400, 400, 60)),
    "2D slices 0.7 mm, 512 x 512": ((SLICE_SPACING_2D_MM, 0.7, 0.7), (1, 512, 512)),
    "2D slices 1 mm, 380 x 330": ((SLICE_SPACING_2D_MM, 1.0, 1.0), (1, 380, 330)),
}
GPU_8GB: dict = {"memory_budget_gb": 8.0, "device_profile": "gpu 8 GB"}
CPU: dict = {
    "memory_budget_gb": CPU_PROFILE_BUDGET_GB,
    "device_profile": "cpu",
    "base_features": 16,
    "max_features": 128,
}


def _fmt(v: tuple) -> str:
    return " x ".join(f"{x:g}" if isinstance(x, float) else str(x) for x in v)


def _row(name: str, plan: Plan, reference: str = "") -> str:
    low = (
        "-"
        if plan.lowres is None
        else (
            f"{_fmt(tuple(round(s, 2) for s in plan.lowres.target_spacing))} mm, "
            f"patch {_fmt(plan.lowres.patch_size)}"
        )
    )
    two_d = (
        "-"
        if plan.two_d is None
        else f"{_fmt(plan.two_d.patch_size)}, batch {plan.two_d.batch_size}"
    )
    spacing = _fmt(tuple(round(s, 2) for s in plan.target_spacing))
    view = _fmt(plan.classification_shape) if plan.has_diagnosis else "-"
    return (
        f"| {name} | {plan.device_profile} | {plan.configuration} | {spacing}"
        f" | {_fmt(plan.transpose_forward)} | {_fmt(plan.patch_size)} | {plan.batch_size} | "
        f"{plan.topology.num_stages} | {_fmt(plan.topology.kernel_sizes[0])} | {view} | "
        f"{', '.join(f'{e:.2f}' for e in plan.eta)} | {low} | {two_d} | "
        f"{plan.estimated_memory_gb:.2f} | {reference} |"
    )


def _real_ct_raw(shared: Path, tmp: Path) -> Path | None:
    """COVID-CT-MD's three real CTs as a raw dataset of symlinks (diagnoses, no masks)."""
    src = shared / "covid_ct_md"
    if not (src / "cases.csv").is_file():
        return None
    raw = tmp / "covid_ct_md"
    (raw / "imagesTr").mkdir(parents=True)
    rows = []
    with open(src / "cases.csv", encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            (raw / "imagesTr" / f"{row['case_id']}_0000.nii.gz").symlink_to(src / row["file"])
            rows.append((row["case_id"], row["diagnosis"]))
    with open(raw / "diagnosesTr.csv", "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows([("case", "diagnosis"), *rows])
    meta = {
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, "lesion": 1},
        "numTraining": len(rows),
        "file_ending": ".nii.gz",
        "classes": sorted({d for _, d in rows}),
    }
    (raw / "dataset.json").write_text(json.dumps(meta), encoding="utf-8")
    return raw


def _real_2d_raw(shared: Path, tmp: Path, num: int = 20) -> Path | None:
    """Inf-Net's real 2D slices (JPG, no spacing) as 2D NIfTI at 1 mm with binary masks."""
    src = shared / "infnet_semiseg" / "Dataset" / "TrainingSet" / "LungInfection-Train"
    src = src / "Doctor-label"
    if not (src / "Imgs").is_dir():
        return None
    raw = tmp / "infnet_2d"
    names = sorted(p.stem for p in (src / "Imgs").glob("*.jpg"))[:num]
    for sub in ("imagesTr", "labelsTr"):
        (raw / sub).mkdir(parents=True)
    for name in names:
        image = sitk.ReadImage(str(src / "Imgs" / f"{name}.jpg"))
        mask = sitk.GetArrayFromImage(sitk.ReadImage(str(src / "GT" / f"{name}.png")))
        label = sitk.GetImageFromArray((mask > 127).astype(np.uint8))
        label.CopyInformation(image)
        sitk.WriteImage(image, str(raw / "imagesTr" / f"infnet_{name}_0000.nii.gz"))
        sitk.WriteImage(label, str(raw / "labelsTr" / f"infnet_{name}.nii.gz"))
    meta = {
        "channel_names": {"0": "slice"},
        "labels": {"background": 0, "infection": 1},
        "numTraining": len(names),
        "file_ending": ".nii.gz",
    }
    (raw / "dataset.json").write_text(json.dumps(meta), encoding="utf-8")
    return raw


def _datasets(args: argparse.Namespace, tmp: Path) -> Iterator[tuple[str, Fingerprint]]:
    if not args.no_demo:
        demo = tmp / "demo"
        generate_dataset(demo, num_train=24, seed=0, fov_mm=100.0, z_extent_mm=100.0)
        yield (
            "demo dataset (24 generated CTs)",
            compute_fingerprint(load_raw_dataset(demo), num_workers=2),
        )
    real = _real_ct_raw(args.shared_data, tmp)
    if real is None:
        print(f"(skipped: no real CTs in {args.shared_data / 'covid_ct_md'})", file=sys.stderr)
    else:
        yield (
            "real CTs: COVID-CT-MD (3 scans)",
            compute_fingerprint(load_raw_dataset(real), num_workers=2),
        )
    real_2d = _real_2d_raw(args.shared_data, tmp)
    if real_2d is None:
        print(f"(skipped: no Inf-Net slices in {args.shared_data})", file=sys.stderr)
    else:
        yield "real 2D slices: Inf-Net (20 JPGs)", compute_fingerprint(load_raw_dataset(real_2d))
    for raw in args.dataset:
        yield raw.name, compute_fingerprint(load_raw_dataset(raw), num_workers=2)


def device_size_table(sizes_gb: list[float]) -> list[str]:
    """Markdown rows: the chest-CT fingerprint planned for each device size."""
    fp = chest_ct_fingerprint()
    rows = [
        "| device | budget | patch | batch | patch x batch (Mvox) | est. GB | view | low-res "
        "patch | 2d patch, batch |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for size in sizes_gb:
        budget = usable_budget_gb(size)
        plan = plan_experiment(fp, memory_budget_gb=budget, device_profile=f"gpu {size:g} GB")
        low = "-" if plan.lowres is None else _fmt(plan.lowres.patch_size)
        two_d = "-"
        if plan.two_d is not None:
            two_d = f"{_fmt(plan.two_d.patch_size)}, {plan.two_d.batch_size}"
        mvox = np.prod(plan.patch_size) * plan.batch_size / 1e6
        rows.append(
            f"| {size:g} GB | {budget:.1f} GB | {_fmt(plan.patch_size)} | {plan.batch_size} | "
            f"{mvox:.1f} | {plan.estimated_memory_gb:.1f} | {_fmt(plan.classification_shape)} | "
            f"{low} | {two_d} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", type=Path, action="append", default=[])
    parser.add_argument(
        "--shared-data",
        type=Path,
        default=Path(__file__).resolve().parents[2] / "shared" / "data",
        help="the shared real data folder (default ../shared/data beside the checkout)",
    )
    parser.add_argument("--no-demo", action="store_true", help="skip the generated demo")
    parser.add_argument(
        "--device-sizes",
        type=float,
        nargs="*",
        default=None,
        metavar="GB",
        help="only print the chest-CT plan for CUDA devices of these sizes (default 8 24 40 "
        "80 141)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if args.device_sizes is not None:
        print("\n".join(device_size_table(args.device_sizes or [8, 24, 40, 80, 141])))
        return
    print(
        "| input | profile | config | spacing (mm) | axis order | patch | batch | stages |"
        " kernel 0 | view | eta | low-res | 2d config | est. GB | nnU-Net v2 8 GB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, (spacing, shape) in CASES.items():
        is_2d = shape[0] == 1
        seg_only = make_fingerprint([spacing] * 10, [shape] * 10, classes=(), is_2d=is_2d)
        print(
            _row(
                name + " (seg only)", plan_experiment(seg_only, **GPU_8GB), NNUNET_8GB.get(name, "")
            )
        )
        joint = make_fingerprint([spacing] * 10, [shape] * 10, is_2d=is_2d)
        print(_row(name + " (joint)", plan_experiment(joint, **GPU_8GB)))
        print(_row(name + " (joint)", plan_experiment(joint, **CPU)))
    with tempfile.TemporaryDirectory() as tmp:
        for name, fp in _datasets(args, Path(tmp)):
            for profile in (GPU_8GB, CPU):
                print(_row(name, plan_experiment(fp, **profile)))


if __name__ == "__main__":
    main()
