"""Does joint training help? Joint vs segmentation-only vs classification-only vs each
switch, at equal budget, over several seeds, scored by the fold's full-case validation.

    python benchmarks/multitask_gain.py --out benchmarks/results [--dataset RAW]
        [--seeds 0 1] [--epochs 8] [--iterations 25] [--augmentation light] [--fold 0]
        [--variants NAME ...] [--threads N]

Without ``--dataset`` a demo dataset of ``--num-cases`` (default 40, so fold 0 validates on
8 cases) is generated with scripts/demo.sh's geometry. Training uses Adam and, by default,
the demo's light augmentation: at a 200-step budget both beat the library defaults.
Writes ``multitask_gain.md`` (mean ± sd over seeds of lesion Dice, NSD, diagnosis accuracy,
macro-AUC, and the lesion contrast of the CAM and Grad-CAM evidence maps),
``multitask_gain.png``, and one ``evidence/RUN.png`` per run (the largest validation lesion
with its CAM and Grad-CAM).

Each (variant, seed) row is cached in ``runs/RUN/result.json``: a rerun resumes, and
several processes given disjoint ``--variants`` can share one ``--out`` (a last run over
all variants then only reads the cache and writes the table). Start them once
``OUT/work/plans.json`` exists (let one process plan first): planning is not locked. A
cached row made with another budget, augmentation or fold is refused, not mixed in.

Lesion contrast (``autojoint.evaluation.evidence``): on each validation case's whole-scan
view, mean evidence inside the reference lesions / mean evidence in the rest of the lung,
where the lung is the view's voxels below -500 HU (undone CT normalisation) plus the
lesions. Above 1 the explanation concentrates on lesions.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch
from matplotlib.ticker import NullFormatter

from autojoint.data.augmentation import AUGMENTATION_PRESETS
from autojoint.evaluation.evidence import evidence_lesion_contrast, evidence_peak_in_lesion
from autojoint.inference.ensemble import load_ensemble
from autojoint.inference.gradcam import grad_cam
from autojoint.io.files import atomic_write, read_json, write_json
from autojoint.io.workdir import (
    PLANS_FILE,
    PREPROCESSED_DIR,
    SPLITS_FILE,
    preprocessed_dir,
)
from autojoint.pipeline import plan_and_preprocess
from autojoint.planning.presets import preset_overrides
from autojoint.preprocessing.preprocess import load_preprocessed
from autojoint.reporting.figures import new_figure, save_png
from autojoint.training.config import PLAN_SCHEDULE, TrainerConfig
from autojoint.training.launch import train_fold

LUNG_HU = -500.0
COLUMNS = (
    "lesion Dice",
    "lesion NSD",
    "accuracy",
    "macro-AUC",
    "CAM contrast",
    "Grad-CAM contrast",
    "CAM peak in lesion",
)

VARIANTS: dict[str, tuple[str, ...]] = {
    "joint (default)": (),
    "segmentation only": ("loss_weights.cls=0", "loss_weights.task_aware=0"),
    "classification only": ("loss_weights.seg=0", "loss_weights.task_aware=0"),
    "joint, task-aware loss off": ("loss_weights.task_aware=0",),
    "joint + reverse attention": ("network.reverse_attention=true",),
    "joint + cross-stitch stem": ("network.cross_stitch=true",),
    "joint + multiply input": ("network.classifier_input=multiply",),
    "joint + refinement n=2": ("network.refinement_passes=2",),
    "joint + MSD-Net blocks": (
        "network.pyramid_conv=true",
        "network.channel_attention=true",
        "network.residual_refinement=true",
    ),
    "preset deepsc-covid": preset_overrides("deepsc-covid"),
    "preset multir-net": preset_overrides("multir-net"),
    "preset msd-net": preset_overrides("msd-net"),
}


def _case_evidence(net, view: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """CAM (eq. 5, mean over all classifier units) and Grad-CAM (deepest classifier unit) of
    the predicted class on one whole-scan view, both at the view's size."""
    with torch.no_grad():
        _, logits, feats = net.classify(view)
        maps = net.cls.evidence_maps(feats, logits.argmax(1))
        size = view.shape[2:]
        up = [torch.nn.functional.interpolate(m, size=size, mode="trilinear") for m in maps]
        cam = torch.relu(torch.stack(up).mean(0))[0, 0].numpy()
    grad = grad_cam(net, view).maps[0, 0].numpy()
    return cam, grad


def evidence_contrasts(
    work: Path, fold: str, case_ids: list[str], figure: Path | None = None
) -> tuple[float, float, float]:
    """Mean lesion contrast of the CAM and Grad-CAM maps over ``case_ids``' whole-scan views,
    and the share of those views whose CAM peaks inside a lesion (a metric no loss optimises).

    With ``figure``, the case with the largest reference lesion is drawn (axial slice of
    maximal lesion area: image with lesion outline, CAM, Grad-CAM) so a reader can see where
    the explanation points, not only its contrast figure.
    """
    ens = load_ensemble(work, [fold], torch.device("cpu"))
    net, plan = ens.nets[0], ens.plan
    if net.cls is None:
        return float("nan"), float("nan"), float("nan")
    norm = plan.normalization[0]
    lung_level = (LUNG_HU - norm.mean) / norm.std if norm.scheme == "ct" else -np.inf
    cam_values, grad_values, hits = [], [], []
    largest: tuple[int, str, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
    for case in case_ids:
        pre = load_preprocessed(preprocessed_dir(work), case)
        if pre.cls_seg is None or not (pre.cls_seg > 0).any():
            continue
        view = torch.from_numpy(pre.cls_data[None]).float()
        lesion = pre.cls_seg[0] > 0 if pre.cls_seg.ndim == 4 else pre.cls_seg > 0
        lung = (pre.cls_data[0] < lung_level) | lesion
        cam, grad = _case_evidence(net, view)
        cam_values.append(evidence_lesion_contrast(cam, lesion, lung))
        grad_values.append(evidence_lesion_contrast(grad, lesion, lung))
        hits.append(float(evidence_peak_in_lesion(cam, lesion)))
        if largest is None or int(lesion.sum()) > largest[0]:
            largest = (int(lesion.sum()), case, pre.cls_data[0], lesion, cam, grad)
    if figure is not None and largest is not None:
        _evidence_figure(figure, *largest[1:])
    return (
        float(np.nanmean(cam_values or [np.nan])),
        float(np.nanmean(grad_values or [np.nan])),
        float(np.mean(hits or [np.nan])),
    )


def _evidence_figure(
    path: Path,
    case: str,
    image: np.ndarray,
    lesion: np.ndarray,
    cam: np.ndarray,
    grad: np.ndarray,
) -> None:
    z = int(np.argmax(lesion.reshape(lesion.shape[0], -1).sum(1)))
    fig = new_figure(10, 3.6)
    panels = (("image + reference lesion", None), ("CAM (eq. 5)", cam), ("Grad-CAM", grad))
    for i, (title, ev) in enumerate(panels):
        ax = fig.add_subplot(1, 3, i + 1)
        ax.imshow(image[z], cmap="gray")
        if ev is not None:
            ax.imshow(ev[z], cmap="jet", alpha=0.45)
        ax.contour(lesion[z].astype(float), levels=[0.5], colors="lime", linewidths=0.8)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.suptitle(f"{case}, slice {z} (plan axis 0) of the whole-scan view", fontsize=10)
    fig.tight_layout()
    save_png(fig, path)


def _variant_work_dir(shared: Path, root: Path) -> Path:
    """A work dir sharing the plan and preprocessed data, with its own fold folders."""
    root.mkdir(parents=True, exist_ok=True)
    for name in (PLANS_FILE, PREPROCESSED_DIR, SPLITS_FILE):
        link = root / name
        if not link.exists() and (shared / name).exists():
            os.symlink((shared / name).resolve(), link)
    return root


def run_variant(
    shared: Path, out: Path, name: str, seed: int, args: argparse.Namespace
) -> tuple[float, ...]:
    """Train and score one (variant, seed); the row is cached in the run's ``result.json`` so
    that an interrupted benchmark resumes and several processes can share the variant list."""
    work = _variant_work_dir(shared, out / "runs" / f"{name}-seed{seed}".replace(" ", "_"))
    cached = work / "result.json"
    setup = {
        "budget": {"epochs": args.epochs, "iterations": args.iterations},
        "augmentation": args.augmentation,
        "fold": args.fold,
    }
    if cached.is_file():
        record = read_json(cached)
        stored = {k: record.get(k, setup[k]) for k in setup}  # older records: no fold
        if stored != setup:
            raise SystemExit(
                f"{cached} holds a run with {stored}, not {setup}; use another --out or "
                "delete that run folder."
            )
        # NaN (e.g. no AUC with one class) is stored as JSON null.
        return tuple(float("nan") if v is None else float(v) for v in record["row"])
    config = TrainerConfig(
        epochs=args.epochs,
        iterations_per_epoch=args.iterations,
        seed=seed,
        plan_overrides=VARIANTS[name],
        optimizer="adam",  # as scripts/demo.sh: SGD lags at this tiny budget
        schedule=PLAN_SCHEDULE,  # the presets' own schedule (deepsc-covid: two-stage)
        augmentation=args.augmentation,
        val_iterations=2,  # the per-epoch validation loss only picks checkpoint_best
    )
    fold = train_fold(work, args.fold, config)
    summary = read_json(fold / "validation" / "summary.json")
    lesion = summary["mean"]["lesion"]
    diagnosis = summary.get("diagnosis") or {}
    cases = [e["case"] for e in summary["metric_per_case"]]
    figure = out / "evidence" / f"{work.name}.png"
    cam, grad, pointing = evidence_contrasts(work, args.fold, cases, figure)
    row = tuple(
        float("nan") if v is None else float(v)
        for v in (
            lesion.get("dice"),
            lesion.get("nsd"),
            diagnosis.get("accuracy"),
            diagnosis.get("macro_auc"),
            cam,
            grad,
            pointing,
        )
    )
    record = {"variant": name, "seed": seed, "columns": list(COLUMNS), "row": list(row)}
    record.update(setup)
    write_json(record, cached)
    return row


def write_report(out: Path, results: dict[str, list[tuple[float, ...]]], args) -> None:
    """Markdown table (mean ± sd over seeds) and a bar plot of every column."""
    lines = [
        f"Fold {args.fold}, {args.epochs} epochs x {args.iterations} iterations, Adam, "
        f"augmentation {args.augmentation}, seeds {args.seeds}; mean ± sd over seeds "
        "(full-case validation, preprocessed space).",
        "",
        "| variant | " + " | ".join(COLUMNS) + " |",
        "|---|" + "---|" * len(COLUMNS),
    ]
    for name, values in results.items():
        v = np.array(values)
        cells = [
            f"{np.nanmean(v[:, i]):.3f} ± {np.nanstd(v[:, i]):.3f}" for i in range(len(COLUMNS))
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    table = "\n".join(lines) + "\n"
    atomic_write(out / "multitask_gain.md", lambda fh: fh.write(table))
    print(table)
    names = list(results)
    fig = new_figure(16, 1 + 0.4 * len(names))
    for i, title in enumerate(COLUMNS):
        ax = fig.add_subplot(1, len(COLUMNS), i + 1)
        v = [np.array(results[n])[:, i] for n in names]
        if "contrast" in title:  # a ratio: log axis, 1 = no concentration on lesions
            ax.barh(names, [np.nanmean(x) for x in v], left=0)
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # decade labels only
            ax.axvline(1.0, color="k", linewidth=0.8)
            for y, x in enumerate(v):
                ax.plot(x, [y] * len(x), "k.", markersize=4)  # each seed
        else:
            ax.barh(names, [np.nanmean(x) for x in v], xerr=[np.nanstd(x) for x in v])
        ax.set_title(title)
        if i:
            ax.set_yticklabels([])
    fig.tight_layout()
    save_png(fig, out / "multitask_gain.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dataset", type=Path, default=None)
    parser.add_argument("--num-cases", type=int, default=40, help="generated demo cases")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=25)
    parser.add_argument("--augmentation", default="light", choices=AUGMENTATION_PRESETS)
    parser.add_argument("--fold", default="0")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    out: Path = args.out
    raw = args.dataset
    if raw is None:
        from dataset_conversion.generate_demo import generate_dataset

        raw = out / "raw"
        if not (raw / "dataset.json").is_file():
            generate_dataset(raw, num_train=args.num_cases, seed=0, fov_mm=100.0, z_extent_mm=100.0)
    shared = out / "work"
    if not (shared / PLANS_FILE).is_file():
        plan_and_preprocess(raw, shared, num_workers=2)
    results: dict[str, list[tuple[float, ...]]] = {}
    for name in args.variants:
        for seed in args.seeds:
            row = run_variant(shared, out, name, seed, args)
            results.setdefault(name, []).append(row)
            shown = ", ".join(f"{c} {v:.3f}" for c, v in zip(COLUMNS, row, strict=True))
            print(f"{name} seed {seed}: {shown}", flush=True)
    write_report(out, results, args)


if __name__ == "__main__":
    main()
