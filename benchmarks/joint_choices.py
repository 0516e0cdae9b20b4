"""The measurements behind the joint model's defaults (issue 16): one script, one table.

    python benchmarks/joint_choices.py --out DIR [--variants NAME ...] [--seeds 0]
        [--epochs 12] [--iterations 25] [--jobs 2] [--threads 1]
        [--num-train 24] [--num-test 15]

Generates the demo dataset (scripts/demo.sh's geometry, ``--num-train`` training and
``--num-test`` held-out cases), plans it once, then trains every (variant, seed) on all
training cases with the demo's optimiser and augmentation, and scores the held-out cases:

- the fused full-resolution mask (what ``autojoint_predict`` writes, no mirroring) and the
  mask of the finest head alone: Dice per label and of the lesion union;
- the whole-scan view's mask fused with the view eta, with the patch eta, and from the
  finest head alone (union Dice on the view grid);
- the diagnosis from the view's own lesion map (default) and from the full-resolution
  lesion probability resampled to the view: accuracy and macro-AUC of each;
- the final epoch's training losses.

A variant is a set of ``--set`` plan overrides plus trainer options (``VARIANTS``). Each
run's row is cached in ``DIR/runs/RUN/result.json``, so a rerun resumes; ``--jobs`` runs
that many trainings at once (give each ``--threads`` torch threads).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

VARIANTS: dict[str, dict] = {
    "default": {},
    "ta off": {"set": ["loss_weights.task_aware=0"]},
    "ta 1": {"set": ["loss_weights.task_aware=1"]},
    "ta 3": {"set": ["loss_weights.task_aware=3"]},
    "ta grad segmentation": {"set": ["loss.task_aware_gradient=segmentation"]},
    "ta grad both": {"set": ["loss.task_aware_gradient=both"]},
    "ta no warm-up": {"trainer": {"task_aware_warmup": "off"}},
    "unweighted ce": {"set": ["loss.weighted_ce=false"]},
    "batch dice": {"set": ["loss.batch_dice=true"]},
    "segmentation only": {"set": ["loss_weights.cls=0", "loss_weights.task_aware=0"]},
    "classification only": {"set": ["loss_weights.seg=0", "loss_weights.task_aware=0"]},
}


def _run_name(variant: str, seed: int) -> str:
    return f"{variant.replace(' ', '_').replace('+', 'plus')}__s{seed}"


def prepare(out: Path, num_train: int, num_test: int) -> None:
    """Generate and plan the demo dataset once (skipped when already there)."""
    from autojoint.pipeline import plan_and_preprocess
    from dataset_conversion.generate_demo import generate_dataset

    raw, work = out / "raw", out / "work"
    if not (raw / "dataset.json").is_file():
        generate_dataset(
            raw, num_train=num_train, num_test=num_test, seed=0, fov_mm=100.0, z_extent_mm=100.0
        )
    if not (work / "plans.json").is_file():
        plan_and_preprocess(raw, work, num_workers=2)


def _run_work_dir(out: Path, run: Path) -> Path:
    """A work dir per run sharing the planned, preprocessed data (read-only use)."""
    work = run / "work"
    work.mkdir(parents=True, exist_ok=True)
    for entry in (out / "work").iterdir():
        if entry.name.startswith("fold_"):
            continue
        target = work / entry.name
        if not target.exists():
            target.symlink_to(entry.resolve())
    return work


def _dice(pred: np.ndarray, ref: np.ndarray) -> float:
    denom = pred.sum() + ref.sum()
    return float("nan") if denom == 0 else float(2 * np.logical_and(pred, ref).sum() / denom)


def _macro_auc(probs: np.ndarray, ref: np.ndarray) -> float:
    from autojoint.evaluation.metrics import roc_auc_one_vs_rest

    names = [str(k) for k in range(probs.shape[1])]
    return float(roc_auc_one_vs_rest([str(r) for r in ref], probs, names)["macro"])


def analyse(work: Path, raw: Path, fold_dir: Path) -> dict:
    """Score the trained fold on the held-out cases in every way the table reports."""
    import torch
    import torch.nn.functional as F

    from autojoint.inference.ensemble import load_ensemble
    from autojoint.inference.sliding_window import sliding_window_predict
    from autojoint.io.case_loading import load_channels, load_label
    from autojoint.networks.fusion import fuse_scales
    from autojoint.preprocessing.preprocess import preprocess_arrays

    ensemble = load_ensemble(work, [fold_dir.name.removeprefix("fold_")], torch.device("cpu"))
    plan, net = ensemble.plan, ensemble.nets[0].eval()
    diagnoses = dict(
        line.split(",")
        for line in (raw / "diagnosesTs.csv").read_text(encoding="utf-8").splitlines()[1:]
    )
    classes = list(plan.classes)
    k = plan.num_labels
    rows = []
    for case_id, dx in sorted(diagnoses.items()):
        data, geo = load_channels([raw / "imagesTs" / f"{case_id}_0000.nii.gz"])
        seg = load_label(raw / "labelsTs" / f"{case_id}.nii.gz", geo, k)
        pre = preprocess_arrays(case_id, data, geo, seg, plan, dx)

        def both(x: torch.Tensor) -> torch.Tensor:
            scales = net.seg(x)
            fused = torch.softmax(fuse_scales(scales, net.eta), dim=1)
            return torch.cat([fused, torch.softmax(scales[0], dim=1)], dim=1)

        with torch.no_grad():
            probs = sliding_window_predict(
                both, pre.data, plan.patch_size, 2 * k, show_progress=False
            )
            fused, finest = probs[:k].argmax(0), probs[k:].argmax(0)
            view = torch.from_numpy(pre.cls_data[None])
            scales, logits, _ = net.classify(view)
            lesion_full = torch.from_numpy(1.0 - probs[:1][None])
            lesion_full = F.interpolate(
                lesion_full, size=view.shape[2:], mode="trilinear", align_corners=False
            )
            logits_full, _ = net.cls(torch.cat([view, lesion_full], dim=1))
            view_fused = fuse_scales(scales, net.view_eta).argmax(1)[0].numpy() > 0
            view_patch_eta = fuse_scales(scales, net.eta).argmax(1)[0].numpy() > 0
            view_finest = scales[0].argmax(1)[0].numpy() > 0
        ref, ref_view = pre.seg, pre.cls_seg > 0
        row = {
            "case": case_id,
            "diagnosis": classes.index(dx),
            "p_view": torch.softmax(logits, 1)[0].tolist(),
            "p_full": torch.softmax(logits_full, 1)[0].tolist(),
            "view_dice_view_eta": _dice(view_fused, ref_view),
            "view_dice_patch_eta": _dice(view_patch_eta, ref_view),
            "view_dice_finest": _dice(view_finest, ref_view),
        }
        for name, pred in (("fused", fused), ("finest", finest)):
            row[f"{name}_lesion"] = _dice(pred > 0, ref > 0)
            for label, value in plan.labels.items():
                if value > 0:
                    row[f"{name}_{label}"] = _dice(pred == value, ref == value)
        rows.append(row)
    ref = np.array([r["diagnosis"] for r in rows])
    out: dict = {"cases": rows}
    for src in ("view", "full"):
        p = np.array([r[f"p_{src}"] for r in rows])
        out[f"accuracy_{src}"] = float(np.mean(p.argmax(1) == ref))
        out[f"macro_auc_{src}"] = _macro_auc(p, ref)
    keys = [key for key in rows[0] if key not in ("case", "diagnosis", "p_view", "p_full")]
    for key in keys:
        out[key] = float(np.nanmean([r[key] for r in rows]))
    log = json.loads((fold_dir / "training_log.json").read_text(encoding="utf-8"))["epochs"][-1]
    out.update({f"final_{k}": v for k, v in log.items() if k.startswith("loss_")})
    return out


def evidence_scores(work: Path, raw: Path, fold_dir: Path) -> dict:
    """On the held-out diseased cases' views: the share whose CAM / Grad-CAM maximum lies in
    a lesion (a metric no loss optimises) and the CAM's lesion contrast in the lung."""
    import torch
    import torch.nn.functional as F

    from autojoint.evaluation.evidence import evidence_lesion_contrast, evidence_peak_in_lesion
    from autojoint.inference.ensemble import load_ensemble
    from autojoint.inference.gradcam import grad_cam
    from autojoint.io.case_loading import load_channels, load_label
    from autojoint.preprocessing.preprocess import preprocess_arrays

    ensemble = load_ensemble(work, [fold_dir.name.removeprefix("fold_")], torch.device("cpu"))
    plan, net = ensemble.plan, ensemble.nets[0].eval()
    norm = plan.normalization[0]
    lung_level = (-500.0 - norm.mean) / norm.std
    cam_hits, grad_hits, contrasts = [], [], []
    for image in sorted((raw / "imagesTs").glob("*_0000.nii.gz")):
        case_id = image.name.removesuffix("_0000.nii.gz")
        data, geo = load_channels([image])
        seg = load_label(raw / "labelsTs" / f"{case_id}.nii.gz", geo, plan.num_labels)
        pre = preprocess_arrays(case_id, data, geo, seg, plan)
        assert pre.cls_seg is not None
        lesion = pre.cls_seg > 0
        if not lesion.any():
            continue
        view = torch.from_numpy(pre.cls_data[None])
        with torch.no_grad():
            _, logits, feats = net.classify(view)
            maps = net.cls.evidence_maps(feats, logits.argmax(1))
            up = [F.interpolate(m, size=view.shape[2:], mode="trilinear") for m in maps]
            cam = torch.relu(torch.stack(up).mean(0))[0, 0].numpy()
        grad = grad_cam(net, view).maps[0, 0].numpy()
        lung = (pre.cls_data[0] < lung_level) | lesion
        cam_hits.append(evidence_peak_in_lesion(cam, lesion))
        grad_hits.append(evidence_peak_in_lesion(grad, lesion))
        contrasts.append(evidence_lesion_contrast(cam, lesion, lung))
    return {
        "cam_pointing": float(np.mean(cam_hits)),
        "gradcam_pointing": float(np.mean(grad_hits)),
        "cam_contrast": float(np.nanmedian(contrasts)),
    }


def _write_row(path: Path, row: dict) -> None:
    tmp = path.with_suffix(".part")
    tmp.write_text(json.dumps(row, indent=1), encoding="utf-8")
    tmp.replace(path)


def run_one(out: Path, variant: str, seed: int, epochs: int, iterations: int) -> None:
    """Train and score one (variant, seed); writes ``runs/RUN/result.json``."""
    from autojoint.training.config import TrainerConfig
    from autojoint.training.launch import train_fold

    run = out / "runs" / _run_name(variant, seed)
    result = run / "result.json"
    if result.is_file():
        return
    spec = VARIANTS[variant]
    work = _run_work_dir(out, run)
    config = TrainerConfig(
        epochs=epochs,
        iterations_per_epoch=iterations,
        optimizer="adam",
        augmentation="light",
        seed=seed,
        plan_overrides=tuple(spec.get("set", ())),
        final_validation=False,
        checkpoint_every=epochs,
        **spec.get("trainer", {}),
    )
    fold = train_fold(work, "all", config)
    row = {"variant": variant, "seed": seed, "epochs": epochs, "iterations": iterations}
    row.update(analyse(work, out / "raw", fold))
    row.update(evidence_scores(work, out / "raw", fold))
    _write_row(result, row)


def add_missing_evidence(out: Path) -> None:
    """Cached rows from before the evidence columns get them from their checkpoint."""
    for path in sorted((out / "runs").glob("*/result.json")):
        row = json.loads(path.read_text(encoding="utf-8"))
        if "cam_pointing" not in row:
            work = path.parent / "work"
            row.update(evidence_scores(work, out / "raw", work / "fold_all"))
            _write_row(path, row)


COLUMNS = (
    ("fused_lesion", "lesion Dice"),
    ("fused_consolidation", "consol. Dice"),
    ("finest_lesion", "finest-head lesion Dice"),
    ("view_dice_view_eta", "view Dice (view eta)"),
    ("view_dice_patch_eta", "view Dice (patch eta)"),
    ("view_dice_finest", "view Dice (finest)"),
    ("accuracy_view", "accuracy"),
    ("macro_auc_view", "macro-AUC"),
    ("accuracy_full", "accuracy (full-res lesion in)"),
    ("macro_auc_full", "macro-AUC (full-res lesion in)"),
    ("cam_pointing", "CAM peak in lesion"),
    ("gradcam_pointing", "Grad-CAM peak in lesion"),
    ("cam_contrast", "CAM contrast (median)"),
    ("final_loss_cls", "final L_cls"),
)


def table(out: Path) -> str:
    rows: dict[str, list[dict]] = {}
    for path in sorted((out / "runs").glob("*/result.json")):
        r = json.loads(path.read_text(encoding="utf-8"))
        rows.setdefault(r["variant"], []).append(r)
    lines = [
        "| variant | seeds | " + " | ".join(c for _, c in COLUMNS) + " |",
        "|---|---|" + "---|" * len(COLUMNS),
    ]
    for variant in [v for v in VARIANTS if v in rows]:
        rs = rows[variant]
        cells = []
        for key, _ in COLUMNS:
            vals = np.array([r.get(key, np.nan) for r in rs], dtype=float)
            cells.append(
                f"{np.nanmean(vals):.3f}" + (f" ± {np.nanstd(vals):.3f}" if len(vals) > 1 else "")
            )
        lines.append(f"| {variant} | {len(rs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--iterations", type=int, default=25)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--num-train", type=int, default=24)
    parser.add_argument("--num-test", type=int, default=15)
    parser.add_argument("--run-one", nargs=2, metavar=("VARIANT", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.run_one:
        run_one(args.out, args.run_one[0], int(args.run_one[1]), args.epochs, args.iterations)
        return
    prepare(args.out, args.num_train, args.num_test)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads or "")} if args.threads else None
    jobs = [(v, s) for s in args.seeds for v in args.variants]

    def launch(job: tuple[str, int]) -> int:
        variant, seed = job
        log = args.out / "logs" / f"{_run_name(variant, seed)}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, __file__, "--out", str(args.out), "--epochs", str(args.epochs)]
        cmd += ["--iterations", str(args.iterations), "--threads", str(args.threads)]
        cmd += ["--run-one", variant, str(seed)]
        with log.open("w") as fh:
            code = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
        print(f"{variant} seed {seed}: exit {code}", flush=True)
        return code

    with ThreadPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
        list(pool.map(launch, jobs))
    add_missing_evidence(args.out)
    text = table(args.out)
    (args.out / "joint_choices.md").write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
