"""Does joint training help? Joint vs segmentation-only vs classification-only vs each
switch and preset, at equal budget, over several folds and seeds, scored by each fold's
full-case validation, with paired bootstrap intervals of the differences.

    python -m benchmarks.multitask_gain --out OUT [--dataset RAW] [--num-cases 60]
        [--folds 0 1 2] [--seeds 0 1] [--epochs 16] [--iterations 25]
        [--augmentation light] [--variants NAME ...] [--threads N] [--no-validation-tta]
        [--records DIR] [--report-only]

Run it from the repository root, as a module: it imports its report half,
``benchmarks/multitask_report.py``. Without ``--dataset`` a demo dataset of
``--num-cases`` (default 60: 48 training and 12 validation cases per fold) is generated with
scripts/demo.sh's geometry. Training uses Adam and, by default, the demo's light
augmentation. ``--fold F`` is kept as an alias of ``--folds F``.

Every (variant, fold, seed) run is cached in ``runs/RUN/result.json`` (format in
``benchmarks/multitask_report.py``): a rerun resumes (a run killed mid-way continues from
its last epoch's checkpoint, bit-exactly), and several processes given disjoint
``--variants`` (or ``--folds``/``--seeds``) can share one ``--out``; ``--report-only`` then
writes the report from the cached runs without training. Start them once
``OUT/work/plans.json`` exists (let one process plan first): planning is not locked.
``--records DIR`` also keeps each record as ``DIR/RUN.json``, read before ``OUT``: the
repository keeps finished runs in ``benchmarks/results/multitask/``. A
cached run made with another budget, augmentation, dataset or variant definition is
refused, not mixed in.

Writes ``multitask_gain.md`` and ``multitask_gain.json`` (mean ± sd per variant; paired
95 % bootstrap intervals of every variant minus the joint default and of joint minus each
single-task baseline, paired by (fold, seed)), ``multitask_gain.png`` (bars, one dot per
run), ``multitask_gain_curves.png`` (per-variant mean learning curves from each run's
``training_log.json``) and one ``evidence/RUN.png`` per run (the largest validation lesion
with its CAM and Grad-CAM).

Evidence metrics, on each diseased validation case's whole-scan view:

- CAM peak in lesion: the share of views whose CAM (class activation map) maximum lies in a
  reference lesion (the pointing game); no loss optimises it.
- Deletion gain: delete the lung voxels in order of CAM evidence (top 1 %, 2 %, ... 30 %),
  set to the lung's median, and follow the probability of the class predicted on the intact
  view; the same with a random order; gain = area under the random curve minus area under
  the CAM curve (``autojoint.evaluation.evidence.deletion_curve``). Positive: the voxels the
  CAM ranks first are those the diagnosis rests on. No loss optimises it either.
- CAM / Grad-CAM lesion contrast: mean evidence in the lesions / in the rest of the lung.
  The task-aware loss pulls the CAM towards the lesion maps, so for variants trained with it
  the CAM contrast is the optimised quantity: reported apart, for the record.

The lung of a view is its voxels below -500 HU (undone CT normalisation) inside the body
(``autojoint.preprocessing.lung_mask.body_mask``) plus the lesions; without CT
normalisation, the lesions alone (the contrasts are then undefined).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from autojoint.data.augmentation import AUGMENTATION_PRESETS
from autojoint.evaluation.evidence import (
    deletion_area,
    deletion_curve,
    evidence_lesion_contrast,
    evidence_peak_in_lesion,
)
from autojoint.inference.ensemble import load_ensemble
from autojoint.inference.gradcam import grad_cam
from autojoint.io.files import read_json, write_json
from autojoint.io.workdir import PLANS_FILE, PREPROCESSED_DIR, SPLITS_FILE, preprocessed_dir
from autojoint.networks.joint_net import JointNet
from autojoint.pipeline import plan_and_preprocess
from autojoint.planning.presets import preset_overrides
from autojoint.preprocessing.lung_mask import LungMaskOptions, body_mask
from autojoint.preprocessing.preprocess import load_preprocessed
from autojoint.reporting.figures import new_figure, save_png
from autojoint.runtime.devices import subnormals_flushed
from autojoint.training.config import PLAN_SCHEDULE, TrainerConfig
from autojoint.training.launch import train_fold
from autojoint.training.state import TRAINING_LOG_FILE

try:  # the report module sits beside this script: run it as a module of the repository
    from benchmarks.multitask_report import (
        CURVE_KEYS,
        RECORD_VERSION,
        SetupMismatchError,
        find_record,
        read_record,
        read_records,
        record_paths,
        run_name,
        write_report,
    )
except ModuleNotFoundError as err:
    raise SystemExit(
        "run from the repository root as: python -m benchmarks.multitask_gain --out DIR ..."
    ) from err

LUNG_HU = -500.0
DELETION_FRACTIONS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3)
SINGLE_TASK_CLS = ("loss_weights.seg=0", "loss_weights.task_aware=0")

VARIANTS: dict[str, tuple[str, ...]] = {
    "joint (default)": (),
    # The joint default before 2026-12-02: the diagnosis's gradient flows back through the
    # lesion map into the U-Net (docs/benchmarks.md, "64 epochs").
    "joint, end-to-end": ("network.detach_lesion_input=false",),
    "segmentation only": ("loss_weights.cls=0", "loss_weights.task_aware=0"),
    # The joint network with l_seg = l_ta = 0: its classifier still reads the lesion map,
    # which only the diagnosis loss now trains (docs/benchmarks.md, "Classification only"):
    # end to end, or nothing would train that map.
    "classification only": (*SINGLE_TASK_CLS, "network.detach_lesion_input=false"),
    # A classifier fed the image alone: no segmentation output reaches the diagnosis.
    "classification only, image input": (*SINGLE_TASK_CLS, "network.classifier_input=image"),
    "joint, task-aware loss off": ("loss_weights.task_aware=0",),
    "joint + reverse attention": ("network.reverse_attention=true",),
    "joint + cross-stitch stem": ("network.cross_stitch=true",),
    "joint + multiply input": ("network.classifier_input=multiply",),
    # Each lesion label's probability as its own classifier channel: does the lesion's type
    # (ground-glass vs consolidation) help tell COVID-19 from CAP?
    "joint + per-label lesion input": ("network.classifier_input=labels",),
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


def _lung(hu: np.ndarray, lesion: np.ndarray) -> np.ndarray:
    """The lung of a whole-scan view in HU: voxels below ``LUNG_HU`` inside the body (the
    preprocessing's body mask; without it half of the demo's "lung" was the air around the
    body in the crop), plus the reference lesions."""
    body = body_mask(hu, LungMaskOptions().body_threshold_hu)
    return ((hu < LUNG_HU) & body) | lesion


@subnormals_flushed()
def _cam(net: JointNet, views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Signed CAM (class activation map, mean over the classifier units, at the views' size)
    of the predicted class, and the class probabilities."""
    assert net.cls is not None
    _, logits, feats = net.classify(views)
    maps = net.cls.evidence_maps(feats, logits.argmax(1))
    size = tuple(views.shape[2:])
    up = [torch.nn.functional.interpolate(m, size=size, mode="trilinear") for m in maps]
    return torch.stack(up).mean(0)[:, 0], torch.softmax(logits, dim=1)


@torch.no_grad()
def evidence_scores(
    work: Path, fold: str, case_ids: Sequence[str], *, figure: Path | None, seed: int
) -> tuple[dict[str, float], dict[str, list[float]] | None]:
    """Evidence metrics (module docstring) over the diseased cases of ``case_ids``, and the
    mean deletion curves (``fractions``, ``evidence``, ``random``).

    With ``figure``, the case with the largest reference lesion is drawn (axial slice of
    maximal lesion area: image with lesion outline, CAM, Grad-CAM).
    """
    names = ("cam_contrast", "gradcam_contrast", "cam_peak_in_lesion", "deletion_gain")
    ens = load_ensemble(work, [fold], torch.device("cpu"))
    net, plan = ens.nets[0], ens.plan
    if net.cls is None:
        return dict.fromkeys(names, math.nan), None
    norm = plan.normalization[0]
    is_ct = norm.scheme == "ct"
    rng = np.random.default_rng(seed)
    values: dict[str, list[float]] = {k: [] for k in names}
    curves: dict[str, list[np.ndarray]] = {"evidence": [], "random": []}
    largest: tuple[int, str, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
    for case in case_ids:
        pre = load_preprocessed(preprocessed_dir(work), case)
        if pre.cls_seg is None or not (pre.cls_seg > 0).any():
            continue
        view = pre.cls_data.astype(np.float32)
        lesion = (pre.cls_seg[0] if pre.cls_seg.ndim == 4 else pre.cls_seg) > 0
        lung = _lung(view[0] * norm.std + norm.mean, lesion) if is_ct else lesion.copy()
        signed, probs = _cam(net, torch.from_numpy(view[None]))
        cam = torch.relu(signed)[0].numpy()
        grad = grad_cam(net, torch.from_numpy(view[None])).maps[0, 0].numpy()
        values["cam_contrast"].append(evidence_lesion_contrast(cam, lesion, lung))
        values["gradcam_contrast"].append(evidence_lesion_contrast(grad, lesion, lung))
        values["cam_peak_in_lesion"].append(float(evidence_peak_in_lesion(cam, lesion)))
        predicted = int(probs.argmax())

        def score(batch: np.ndarray, k: int = predicted) -> np.ndarray:
            _, p = _cam(net, torch.from_numpy(batch.astype(np.float32)))
            return p[:, k].numpy()

        fill = float(np.median(view[0][lung]))
        by_cam = deletion_curve(view, signed[0].numpy(), lung, DELETION_FRACTIONS, score, fill=fill)
        by_chance = deletion_curve(
            view, rng.random(lesion.shape), lung, DELETION_FRACTIONS, score, fill=fill
        )
        curves["evidence"].append(by_cam)
        curves["random"].append(by_chance)
        values["deletion_gain"].append(
            deletion_area(DELETION_FRACTIONS, by_chance) - deletion_area(DELETION_FRACTIONS, by_cam)
        )
        if largest is None or int(lesion.sum()) > largest[0]:
            largest = (int(lesion.sum()), case, view[0], lesion, cam, grad)
    if figure is not None and largest is not None:
        _evidence_figure(figure, *largest[1:])
    metrics = {
        k: float(np.nanmean(v)) if np.isfinite(v).any() else math.nan for k, v in values.items()
    }
    mean_curves = None
    if curves["evidence"]:
        mean_curves = {
            "fractions": list(DELETION_FRACTIONS),
            **{k: np.mean(v, axis=0).tolist() for k, v in curves.items()},
        }
    return metrics, mean_curves


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


def segmentation_scores(summary: dict) -> dict[str, float]:
    """Lesion (union of labels) Dice, precision, recall, NSD and mean absolute volume error
    (ml) of a validation ``summary.json``, and each label's Dice as ``dice_<label>``. Means
    over the cases where each is defined: precision needs a predicted lesion, recall a
    reference one, a label's Dice the label in the reference or the prediction; the volume
    error counts every case with a mask (a normal scan's is its predicted lesion volume)."""
    per_label = {
        f"dice_{name}": summary["mean"].get(name, {}).get("dice") for name in summary["labels"]
    }
    mean = summary["mean"]["lesion"]
    errors = [
        abs(block["volume_pred_ml"] - block["volume_ref_ml"])
        for entry in summary["metric_per_case"]
        if "volume_pred_ml" in (block := entry.get("metrics", {}).get("lesion", {}))
    ]
    out = {k: mean.get(k) for k in ("dice", "precision", "nsd")}
    out["recall"] = mean.get("sensitivity")
    out["volume_error_ml"] = float(np.mean(errors)) if errors else math.nan
    out.update(per_label)
    return {k: math.nan if v is None else float(v) for k, v in out.items()}


def learning_curves(epochs: list[dict]) -> dict[str, list[float | None]]:
    """``CURVE_KEYS`` of every epoch of a ``training_log.json`` (None if absent)."""
    return {k: [e.get(k) for e in epochs] for k in CURVE_KEYS}


def _link_shared(shared: Path, root: Path) -> Path:
    """A work dir sharing the plan and preprocessed data, with its own fold folders."""
    root.mkdir(parents=True, exist_ok=True)
    for name in (PLANS_FILE, PREPROCESSED_DIR, SPLITS_FILE):
        link = root / name
        if not link.exists() and (shared / name).exists():
            os.symlink((shared / name).resolve(), link)
    return root


def refuse_stale_plan(path: Path) -> None:
    """Refuse a shared plan written before ``network.detach_lesion_input`` existed: it loads
    with the switch off (end to end, as it was trained), so every variant that relies on
    today's default would silently train the old way under its name."""
    network = read_json(path).get("network", {})
    if "detach_lesion_input" not in network:
        raise SystemExit(
            f"{path} was planned by an older autojoint (its network section has no "
            "detach_lesion_input, so it would train end to end); use a new --out, or add "
            '"detach_lesion_input": true to that section (what the planner writes today).'
        )


def run_setup(args: argparse.Namespace, variant: str) -> dict:
    """What a cached run must have been made with to be reused."""
    return {
        "budget": {"epochs": args.epochs, "iterations": args.iterations},
        "augmentation": args.augmentation,
        "data": str(args.dataset) if args.dataset else f"demo, {args.num_cases} cases",
        "validation_tta": args.validation_tta,
        "overrides": list(VARIANTS[variant]),
    }


def run_variant(
    shared: Path, out: Path, variant: str, fold: str, seed: int, args: argparse.Namespace
) -> dict:
    """Train and score one (variant, fold, seed); the record is cached in the run's
    ``result.json`` so that an interrupted benchmark resumes and several processes can
    share the list of runs."""
    name = run_name(variant, fold, seed)
    setup = run_setup(args, variant)
    found = find_record(out, name, args.records)
    if found is not None:
        return read_record(found, setup)
    work = _link_shared(shared, out / "runs" / name)
    config = TrainerConfig(
        epochs=args.epochs,
        iterations_per_epoch=args.iterations,
        seed=seed,
        plan_overrides=VARIANTS[variant],
        optimizer="adam",  # as scripts/demo.sh: SGD lags at this tiny budget
        schedule=PLAN_SCHEDULE,  # the presets' own schedule (deepsc-covid: two-stage)
        augmentation=args.augmentation,
        val_iterations=2,  # the per-epoch validation loss only picks checkpoint_best
        use_validation_tta=args.validation_tta,
        checkpoint_every=1,  # a run killed mid-way (a session's end) loses one epoch at most
        resume=True,  # continues bit-exactly from checkpoint_latest.pt (num_workers=0)
    )
    fold_dir = train_fold(work, fold, config)
    epochs = read_json(fold_dir / TRAINING_LOG_FILE)["epochs"]
    t0 = time.perf_counter()
    summary = read_json(fold_dir / "validation" / "summary.json")
    diagnosis = summary.get("diagnosis") or {}
    cases = [e["case"] for e in summary["metric_per_case"]]
    evidence, deletion = evidence_scores(
        work, fold, cases, figure=out / "evidence" / f"{work.name}.png", seed=seed
    )
    metrics = {
        **segmentation_scores(summary),
        "accuracy": diagnosis.get("accuracy"),
        "macro_auc": diagnosis.get("macro_auc"),
        **evidence,
    }
    record = {
        "record_version": RECORD_VERSION,
        "variant": variant,
        "fold": fold,
        "seed": seed,
        "setup": setup,
        "metrics": {k: math.nan if v is None else float(v) for k, v in metrics.items()},
        "curves": learning_curves(epochs),
        "deletion": deletion,
        # which diagnoses are mixed up (the report sums them per variant); None without one
        "confusion": (
            {"classes": diagnosis["classes"], "matrix": diagnosis["confusion_matrix"]}
            if "confusion_matrix" in diagnosis
            else None
        ),
        # every epoch's own seconds (a resumed run spans processes) + this scoring
        "seconds": sum(e.get("seconds") or 0.0 for e in epochs) + time.perf_counter() - t0,
    }
    for path in record_paths(out, name, args.records):  # the store's copy and the run's
        write_json(record, path)
    return record


def describe(args: argparse.Namespace) -> str:
    """The first paragraph of the report: what was run."""
    data = str(args.dataset) if args.dataset else f"the demo dataset ({args.num_cases} cases)"
    mirroring = "mirroring as the predictor" if args.validation_tta else "no mirroring"
    return (
        f"{data}; folds {' '.join(args.folds)} x seeds {' '.join(map(str, args.seeds))}; "
        f"{args.epochs} epochs x {args.iterations} iterations, Adam, augmentation "
        f"{args.augmentation}. Scores: each fold's full-case validation (preprocessed space, "
        f"{mirroring}). Lesion precision and recall are means over the cases "
        "with a predicted / a reference lesion; the volume error is the mean absolute "
        "difference of predicted and reference lesion volume over the cases with a mask; "
        "CAM peak in lesion and the "
        "deletion gain are over the diseased validation views (benchmarks/multitask_gain.py)."
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dataset", type=Path, default=None)
    parser.add_argument("--num-cases", type=int, default=60, help="generated demo cases")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--folds", nargs="+", default=["0", "1", "2"])
    which.add_argument("--fold", help="one fold: an alias of --folds FOLD")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=25)
    parser.add_argument("--augmentation", default="light", choices=AUGMENTATION_PRESETS)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument(
        "--records",
        type=Path,
        default=None,
        help="also keep each finished run's record as RECORDS/RUN.json and reuse those "
        "first (e.g. benchmarks/results/multitask: small files to commit, so that finished "
        "runs outlive OUT)",
    )
    parser.add_argument(
        "--no-validation-tta",
        dest="validation_tta",
        action="store_false",
        help="score the folds without mirroring (the predictor's default mirrors; 8x faster "
        "validation in 3D)",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="write the report from the cached runs; train nothing",
    )
    args = parser.parse_args(argv)
    if args.fold is not None:
        args.folds = [args.fold]
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    try:
        run(parse_args(argv))
    except SetupMismatchError as err:  # a cached run of another setup: say which, no trace
        raise SystemExit(str(err)) from err


def run(args: argparse.Namespace) -> None:
    """Train (unless ``--report-only``) every run not cached yet, then write the report."""
    if args.threads:
        torch.set_num_threads(args.threads)
    out: Path = args.out
    setups = {v: run_setup(args, v) for v in args.variants}
    if not args.report_only:
        raw = args.dataset
        if raw is None:
            from dataset_conversion.generate_demo import generate_dataset

            raw = out / "raw"
            if not (raw / "dataset.json").is_file():
                generate_dataset(
                    raw, num_train=args.num_cases, seed=0, fov_mm=100.0, z_extent_mm=100.0
                )
        shared = out / "work"
        if not (shared / PLANS_FILE).is_file():
            plan_and_preprocess(raw, shared, num_workers=2)
        refuse_stale_plan(shared / PLANS_FILE)
        for variant in args.variants:
            for fold in args.folds:
                for seed in args.seeds:
                    metrics = run_variant(shared, out, variant, fold, seed, args)["metrics"]
                    shown = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if v is not None)
                    print(f"{variant} fold {fold} seed {seed}: {shown}", flush=True)
    records, missing = read_records(
        out, args.variants, args.folds, args.seeds, setups, args.records
    )
    if missing:
        print(f"not yet run, left out of the report: {', '.join(missing)}")
    common = {k: v for k, v in run_setup(args, args.variants[0]).items() if k != "overrides"}
    common.update(folds=args.folds, seeds=args.seeds)
    print(write_report(out, records, common, describe(args)))


if __name__ == "__main__":
    main()
