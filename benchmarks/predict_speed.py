"""How much does the predictor cost beyond the network itself, on a real chest CT?

    python benchmarks/predict_speed.py [--data ../shared/data]
        [--case covid_ct_md/nifti_ds2/P001.nii.gz]
        [-w WORK [-f FOLD ...]] [--tta] [--tile-batch N] [--step-size 0.5] [--device cpu]
        [--threads N] [--spacing Z Y X]

Prints the time per case of ``autojoint_predict``'s whole path (read, preprocess, network,
resample, write) and the overhead ratio = total / (the network's forward passes over the
same tiles, batches and mirrorings alone, timed in the same run). Target (issue 20): <= 1.2,
also on a 512 x 512 x 300 volume.

Without ``-w`` a tiny model is trained first (synthetic demo chests, one epoch of two
iterations: its weights do not matter for speed, its plan does). ``--spacing`` replaces the
self-trained plan's target spacing (coarser = fewer tiles, a quicker run on a busy
machine). Timings on a shared machine are inflated by contention.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from autojoint.inference.ensemble import available_folds, load_ensemble
from autojoint.inference.predict_options import PredictOptions
from autojoint.inference.predictor import run_prediction
from autojoint.inference.sliding_window import (
    predict_mirrored,
    tile_boxes,
    tile_probabilities,
    tile_starts,
)
from autojoint.io.case_loading import load_channels
from autojoint.io.workdir import fold_dir
from autojoint.pipeline import plan_and_preprocess
from autojoint.preprocessing.preprocess import preprocess_arrays
from autojoint.runtime.allocator import reusing_freed_memory
from autojoint.runtime.checkpoint import read_checkpoint, write_checkpoint
from autojoint.runtime.devices import mixed_precision, resolve_device
from autojoint.training.config import TrainerConfig
from autojoint.training.launch import train_fold

REPO = Path(__file__).resolve().parents[1]


def train_tiny_model(root: Path, spacing: tuple[float, float, float] | None) -> Path:
    """A work dir with fold ``all`` trained for two iterations on synthetic chests."""
    from dataset_conversion.generate_demo import generate_dataset

    raw, work = root / "raw", root / "work"
    generate_dataset(raw, num_train=4, seed=0, fov_mm=200.0, z_extent_mm=120.0)
    plan_and_preprocess(raw, work, num_workers=1)
    config = TrainerConfig(epochs=1, iterations_per_epoch=2, final_validation=False)
    train_fold(work, "all", config)
    if spacing is not None:
        path = fold_dir(work, "all") / "checkpoint_final.pt"
        ckpt = read_checkpoint(path)
        write_checkpoint(path, replace(ckpt, plan=replace(ckpt.plan, target_spacing=spacing)))
    return work


@torch.no_grad()
def forward_only_seconds(
    case_path: Path, work: Path, folds: list[str], options: PredictOptions
) -> tuple[float, int]:
    """Seconds of the networks' forward passes over the case's tiles (same batches and
    mirrorings as the predictor) plus the whole-scan classification; number of tiles."""
    dev = resolve_device(options.device)  # "auto" too, as the predictor resolves it
    ens = load_ensemble(work, folds, dev, options.configuration)
    plan = ens.plan
    data, geo = load_channels([case_path])
    pre = preprocess_arrays("bench", data, geo, None, plan)
    padded = pre.data
    shape = [max(s, p) for s, p in zip(padded.shape[1:], plan.patch_size, strict=True)]
    if list(padded.shape[1:]) != shape:
        full = np.full((padded.shape[0], *shape), float(padded.min()), np.float32)
        full[(slice(None), *[slice(0, s) for s in padded.shape[1:]])] = padded
        padded = full
    patch = tuple(plan.patch_size)
    starts = [tile_starts(s, p, options.step_fraction) for s, p in zip(shape, patch, strict=True)]
    tiles = [(z, y, x) for z in starts[0] for y in starts[1] for x in starts[2]]
    batch = options.tile_batch or plan.batch_size
    view = torch.from_numpy(pre.cls_data[None]).to(dev) if plan.has_diagnosis else None
    context = view if plan.network.cross_stitch else None
    seconds = 0.0
    # the allocator setting the predictor's tile loop runs under (runtime/allocator.py):
    # without it the bare passes would pay page faults the predictor no longer pays
    with reusing_freed_memory():
        for net, axes in zip(ens.nets, ens.mirror_axes, strict=True):
            predict = tile_probabilities(net, context)  # as the predictor runs each tile
            for i in range(0, len(tiles), batch):
                group = tiles[i : i + batch]
                x = torch.stack(
                    [
                        torch.from_numpy(
                            padded[:, z : z + patch[0], y : y + patch[1], x0 : x0 + patch[2]]
                        )
                        for z, y, x0 in group
                    ]
                ).to(dev)
                _sync(dev)
                start = time.perf_counter()
                boxes = None
                if context is not None:  # each tile's place in the view (cross-stitch stem)
                    boxes = tile_boxes(group, patch, pre.data.shape[1:]).to(dev)
                with mixed_precision(dev):  # as the predictor runs the networks
                    predict_mirrored(predict, x, axes if options.use_tta else (), boxes)
                _sync(dev)
                seconds += time.perf_counter() - start
            if view is not None:
                start = time.perf_counter()
                with mixed_precision(dev):
                    net.classify(view)
                _sync(dev)
                seconds += time.perf_counter() - start
    return seconds, len(tiles)


@torch.no_grad()
def warm_up(work: Path, folds: list[str], options: PredictOptions) -> None:
    """One forward pass per fold at the tile batch shape before anything is timed: the
    first pass of a process on a new shape pays one-off kernel set-up (oneDNN, cuDNN)."""
    dev = resolve_device(options.device)  # "auto" too, as the predictor resolves it
    ens = load_ensemble(work, folds, dev, options.configuration)
    batch = options.tile_batch or ens.plan.batch_size
    x = torch.zeros((batch, len(ens.plan.channel_names), *ens.plan.patch_size), device=dev)
    with mixed_precision(dev):  # the kernels the predictor's autocast will use
        for net in ens.nets:
            net.seg(x)
    _sync(dev)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--case", default="covid_ct_md/nifti_ds2/P001.nii.gz")
    parser.add_argument("-w", "--work-dir", type=Path, default=None)
    parser.add_argument("-f", "--folds", nargs="+", default=None)
    parser.add_argument("--tta", action="store_true", help="mirroring TTA on (default off)")
    parser.add_argument("--tile-batch", type=int, default=None)
    parser.add_argument("--step-size", type=float, default=0.5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (CPU)")
    parser.add_argument("--spacing", type=float, nargs=3, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    case_path = (args.data / args.case).resolve()
    if not case_path.exists():
        sys.exit(f"{case_path}: not found; pass --data DIR (the shared data folder) or --case.")
    with tempfile.TemporaryDirectory(prefix="predict_speed_") as tmp:
        root = Path(tmp)
        work = args.work_dir or train_tiny_model(root / "model", args.spacing)
        folds = args.folds or available_folds(work)
        inputs = root / "inputs"
        inputs.mkdir()
        (inputs / case_path.name).symlink_to(case_path)
        options = PredictOptions(
            folds=folds,
            device=args.device,
            step_fraction=args.step_size,
            tile_batch=args.tile_batch,
            use_tta=args.tta,
        )
        warm_up(work, folds, options)
        start = time.perf_counter()
        report = run_prediction(inputs, root / "out", work, options)
        total = time.perf_counter() - start
        if not report.ok:
            sys.exit(f"prediction failed: {report.failures}")
        stages = next(iter(report.timings.values()))
        forward, num_tiles = forward_only_seconds(case_path, work, folds, options)
        # Inside the temp folder's lifetime: a self-trained model lives there.
        ens_plan = load_ensemble(work, folds, torch.device("cpu")).plan
    print(
        f"case {case_path.name}: plan spacing {ens_plan.target_spacing}, patch "
        f"{ens_plan.patch_size}, {num_tiles} tiles x {len(folds)} fold(s), TTA "
        f"{'on' if args.tta else 'off'}, tile batch {args.tile_batch or ens_plan.batch_size}, "
        f"device {args.device}, torch threads {torch.get_num_threads()}"
    )
    print("stages (s): " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()))
    case_total = sum(stages.values())
    print(f"total per case {case_total:.2f} s (whole run incl. model loading {total:.2f} s)")
    print(f"network forward passes alone {forward:.2f} s")
    print(f"overhead ratio total / forward = {case_total / forward:.3f} (target <= 1.2)")


if __name__ == "__main__":
    main()
