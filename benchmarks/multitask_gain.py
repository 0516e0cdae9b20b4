"""Does joint training help? Joint vs segmentation-only vs classification-only vs each
switch, at equal budget, over several seeds, scored by the fold's full-case validation.

    python benchmarks/multitask_gain.py --out benchmarks/results [--dataset RAW]
        [--seeds 0 1] [--epochs 4] [--iterations 25] [--fold 0]

Without ``--dataset`` the demo dataset is generated (same settings as scripts/demo.sh).
Writes ``multitask_gain.md`` (mean ± sd of lesion Dice and diagnosis accuracy) and, when
matplotlib is installed, ``multitask_gain.png``. NSD and macro-AUC are added once the
evaluation issue lands them in the validation summary.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autojoint.io.files import read_json  # noqa: E402
from autojoint.planning.pipeline import plan_and_preprocess  # noqa: E402
from autojoint.training.trainer import TrainerConfig, train_fold  # noqa: E402
from autojoint.workdir import PLANS_FILE, PREPROCESSED_DIR, SPLITS_FILE  # noqa: E402

VARIANTS: dict[str, tuple[str, ...]] = {
    "joint (default)": (),
    "segmentation only": ("loss_weights.cls=0", "loss_weights.task_aware=0"),
    "classification only": ("loss_weights.seg=0", "loss_weights.task_aware=0"),
    "joint, task-aware loss off": ("loss_weights.task_aware=0",),
    "joint + reverse attention": ("network.reverse_attention=true",),
    "joint + cross-stitch stem": ("network.cross_stitch=true",),
    "joint + multiply input": ("network.classifier_input=multiply",),
    "joint + refinement n=2": ("network.refinement_passes=2",),
}


def _variant_work_dir(shared: Path, root: Path) -> Path:
    """A work dir sharing the plan and preprocessed data, with its own fold folders."""
    root.mkdir(parents=True, exist_ok=True)
    for name in (PLANS_FILE, PREPROCESSED_DIR, SPLITS_FILE):
        link = root / name
        if not link.exists() and (shared / name).exists():
            os.symlink((shared / name).resolve(), link)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dataset", type=Path, default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=25)
    parser.add_argument("--fold", default="0")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    args = parser.parse_args()
    out: Path = args.out
    raw = args.dataset
    if raw is None:
        from dataset_conversion.generate_demo import generate_dataset

        raw = out / "raw"
        if not (raw / "dataset.json").is_file():
            generate_dataset(raw, num_train=24, seed=0, fov_mm=100.0, z_extent_mm=100.0)
    shared = out / "work"
    if not (shared / PLANS_FILE).is_file():
        plan_and_preprocess(raw, shared, num_workers=2)
    results: dict[str, list[tuple[float, float]]] = {}
    for name in args.variants:
        for seed in args.seeds:
            work = _variant_work_dir(shared, out / "runs" / f"{name}-seed{seed}".replace(" ", "_"))
            config = TrainerConfig(
                epochs=args.epochs,
                iterations_per_epoch=args.iterations,
                seed=seed,
                plan_overrides=VARIANTS[name],
            )
            fold = train_fold(work, args.fold, config)
            summary = read_json(fold / "validation" / "summary.json")
            dice = summary["mean"]["lesion"]["dice"]
            acc = (summary["classification"] or {}).get("accuracy")
            results.setdefault(name, []).append(
                (float("nan") if dice is None else dice, float("nan") if acc is None else acc)
            )
            print(f"{name} seed {seed}: lesion Dice {dice}, accuracy {acc}", flush=True)
    lines = [
        f"Fold {args.fold}, {args.epochs} epochs x {args.iterations} iterations, seeds "
        f"{args.seeds}; mean ± sd over seeds (full-case validation, preprocessed space).",
        "",
        "| variant | lesion Dice | diagnosis accuracy |",
        "|---|---|---|",
    ]
    for name, values in results.items():
        v = np.array(values)
        lines.append(
            f"| {name} | {np.nanmean(v[:, 0]):.3f} ± {np.nanstd(v[:, 0]):.3f} | "
            f"{np.nanmean(v[:, 1]):.3f} ± {np.nanstd(v[:, 1]):.3f} |"
        )
    table = "\n".join(lines) + "\n"
    (out / "multitask_gain.md").write_text(table)
    print(table)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no PNG (pip install matplotlib)")
        return
    names = list(results)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, col, title in ((axes[0], 0, "lesion Dice"), (axes[1], 1, "diagnosis accuracy")):
        v = [np.array(results[n])[:, col] for n in names]
        ax.barh(names, [np.nanmean(x) for x in v], xerr=[np.nanstd(x) for x in v])
        ax.set_title(title)
        ax.set_xlim(0, 1)
    fig.tight_layout()
    fig.savefig(out / "multitask_gain.png", dpi=120)


if __name__ == "__main__":
    main()
