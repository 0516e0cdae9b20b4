"""Print the plans autojoint makes for reference inputs, side by side (Markdown table).

Inputs: hand-made fingerprints (isotropic, anisotropic, tiny, huge) planned for an 8 GB
GPU and the CPU profile, next to nnU-Net v2.8.1's 8 GB reference plans where known; plus,
when given, raw datasets (e.g. the demo) fingerprinted and planned for real.

    python benchmarks/plan_table.py [--dataset RAW_DIR ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autojoint.fingerprint.compute import compute_fingerprint  # noqa: E402
from autojoint.io.dataset import load_raw_dataset  # noqa: E402
from autojoint.planning.planner import CPU_PROFILE_BUDGET_GB, plan_experiment  # noqa: E402
from autojoint.planning.schema import Plan  # noqa: E402
from tests.fingerprints import make_fingerprint  # noqa: E402

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
    spacing = _fmt(tuple(round(s, 2) for s in plan.target_spacing))
    return (
        f"| {name} | {plan.device_profile} | {spacing}"
        f" | {_fmt(plan.transpose_forward)} | {_fmt(plan.patch_size)} | {plan.batch_size} | "
        f"{plan.topology.num_stages} | {_fmt(plan.classification_shape)} | "
        f"{', '.join(f'{e:.2f}' for e in plan.eta)} | {low} | {reference} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", type=Path, action="append", default=[])
    args = parser.parse_args()
    print(
        "| input | profile | spacing (mm) | axis order | patch | batch | stages | view | eta |"
        " low-res | nnU-Net v2 8 GB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, (spacing, shape) in CASES.items():
        fp = make_fingerprint([spacing] * 10, [shape] * 10, classes=())
        print(
            _row(
                name + " (seg only)",
                plan_experiment(fp, memory_budget_gb=8.0, device_profile="gpu 8 GB"),
                NNUNET_8GB.get(name, ""),
            )
        )
        fp = make_fingerprint([spacing] * 10, [shape] * 10)
        print(
            _row(
                name + " (joint)",
                plan_experiment(fp, memory_budget_gb=8.0, device_profile="gpu 8 GB"),
            )
        )
        print(
            _row(
                name + " (joint)",
                plan_experiment(
                    fp,
                    memory_budget_gb=CPU_PROFILE_BUDGET_GB,
                    device_profile="cpu",
                    base_features=16,
                    max_features=128,
                ),
            )
        )
    for raw in args.dataset:
        fp = compute_fingerprint(load_raw_dataset(raw), num_workers=2)
        for budget, profile, widths in (
            (8.0, "gpu 8 GB", {}),
            (CPU_PROFILE_BUDGET_GB, "cpu", {"base_features": 16, "max_features": 128}),
        ):
            print(
                _row(
                    raw.name,
                    plan_experiment(fp, memory_budget_gb=budget, device_profile=profile, **widths),
                )
            )


if __name__ == "__main__":
    main()
