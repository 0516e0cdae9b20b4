"""GPU readiness check (issue 20): the measuring half of ``benchmarks/gpu_check.sh``.

Run from the repository root on a machine with a CUDA GPU; the shell script runs every step:

    python -m benchmarks.gpu_check require-cuda
    python -m benchmarks.gpu_check train WORK [--epochs 3] [--iterations 100]
        [--num-workers N] [--results FILE]
    python -m benchmarks.gpu_check make-ct SOURCE OUTPUT [--size 512 512 300]
    python -m benchmarks.gpu_check predict WORK CT_DIR OUT_DIR [--results FILE]
    python -m benchmarks.gpu_check report FILE

``train`` runs the real trainer (fold ``all``, the plan's schedule, AMP on CUDA) in this
process, so ``torch.cuda.max_memory_allocated`` covers exactly its steps, and sets the peak
against the plan's ``estimated_memory_gb`` (activations only) and the device's size less
the planner's headroom. ``predict`` times ``run_prediction`` on the CT of ``make-ct`` (any
CT resampled to 512 x 512 x 300 voxels over the same field of view) with and without
mirroring. Each step adds its numbers to the results JSON; ``report`` prints them.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import SimpleITK as sitk
import torch

from autojoint.inference.predict_options import PredictOptions
from autojoint.inference.predictor import run_prediction
from autojoint.io.files import read_json, write_json
from autojoint.io.workdir import PLANS_FILE
from autojoint.networks.joint_net import JointNet
from autojoint.planning.schema import Plan
from autojoint.training.config import PLAN_SCHEDULE, TrainerConfig
from autojoint.training.launch import train_fold
from autojoint.training.state import TRAINING_LOG_FILE
from benchmarks.predict_speed import warm_up

GIB = 1024**3
RESULTS_FILE = "gpu_check.json"
CT_SIZE_XYZ = (512, 512, 300)
AIR_HU = -1024.0


def cuda_problem() -> str | None:
    """Why this check cannot run here (no CUDA device torch can use), or None."""
    if torch.cuda.is_available():
        return None
    build = torch.version.cuda
    return (
        f"no CUDA device: torch {torch.__version__} ("
        + (f"built for CUDA {build}" if build else "a CPU-only build")
        + ") sees no GPU. This check measures GPU memory and speed and needs an NVIDIA GPU, "
        "its driver (nvidia-smi) and a CUDA build of torch; on a CPU machine run "
        "scripts/demo.sh instead."
    )


def require_cuda() -> None:
    """Exit with the reason when there is no CUDA device."""
    problem = cuda_problem()
    if problem is not None:
        sys.exit(f"gpu_check: {problem}")


def iterations_per_second(epoch_seconds: Sequence[float], iterations_per_epoch: int) -> float:
    """Training speed from the trainer's per-epoch seconds; the first epoch (loader workers
    starting, cuDNN choosing kernels) is left out when there are others.

    Raises:
        ValueError: no epochs.
    """
    if not epoch_seconds:
        raise ValueError("no epoch timings: the training log holds no epochs.")
    steady = list(epoch_seconds[1:]) or list(epoch_seconds)
    return iterations_per_epoch / statistics.mean(steady)


def resampled_spacing(
    size: Sequence[int], spacing: Sequence[float], new_size: Sequence[int]
) -> tuple[float, ...]:
    """Spacing that keeps the physical extent (size x spacing) of an image at ``new_size``."""
    return tuple(float(s * sp / n) for s, sp, n in zip(size, spacing, new_size, strict=True))


def resample_to_size(image: sitk.Image, size_xyz: Sequence[int]) -> sitk.Image:
    """``image`` on a grid of ``size_xyz`` voxels (SimpleITK's x, y, z order) covering the
    same field of view: same origin and direction, linear interpolation, air outside,
    the input's pixel type kept."""
    spacing = resampled_spacing(image.GetSize(), image.GetSpacing(), size_xyz)
    # The first voxel's centre moves with the spacing so the field of view's edges stay put.
    shift = [(new - old) / 2 for new, old in zip(spacing, image.GetSpacing(), strict=True)]
    direction = [image.GetDirection()[i : i + 3] for i in (0, 3, 6)]
    origin = [
        o + sum(direction[r][c] * shift[c] for c in range(3))
        for r, o in enumerate(image.GetOrigin())
    ]
    return sitk.Resample(
        image,
        [int(v) for v in size_xyz],
        sitk.Transform(),
        sitk.sitkLinear,
        origin,
        spacing,
        image.GetDirection(),
        AIR_HU,
        image.GetPixelID(),
    )


def memory_summary(
    *,
    peak_allocated: int,
    peak_reserved: int,
    device_total: int,
    device_used_now: int,
    reserved_now: int,
    estimate_gb: float,
    budget_gb: float,
) -> dict[str, float]:
    """The training step's memory against the plan (GB).

    ``device_used_now - reserved_now`` (total minus free, less what torch's allocator
    holds) is the memory torch does not manage, the CUDA context above all, provided no
    other process uses the device.
    """
    return {
        "peak_allocated_gb": peak_allocated / GIB,
        "peak_reserved_gb": peak_reserved / GIB,
        "device_gb": device_total / GIB,
        "outside_torch_gb": max(device_used_now - reserved_now, 0) / GIB,
        "estimate_gb": estimate_gb,
        "budget_gb": budget_gb,
        "peak_over_estimate": peak_allocated / GIB / estimate_gb,
    }


def measure_training(
    work: Path, *, epochs: int, iterations: int, num_workers: int, device: str = "cuda"
) -> dict[str, Any]:
    """Train fold ``all`` of ``work`` for ``epochs`` x ``iterations`` on the CUDA
    ``device`` and measure it."""
    plan = Plan.load(work / PLANS_FILE)
    config = TrainerConfig(
        epochs=epochs,
        iterations_per_epoch=iterations,
        device=device,
        num_workers=num_workers,
        schedule=PLAN_SCHEDULE,
        checkpoint_every=epochs,
    )
    torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    out = train_fold(work, "all", config)
    wall = time.perf_counter() - start
    free, total = torch.cuda.mem_get_info(device)
    memory = memory_summary(
        peak_allocated=torch.cuda.max_memory_allocated(device),
        peak_reserved=torch.cuda.max_memory_reserved(device),
        device_total=total,
        device_used_now=total - free,
        reserved_now=torch.cuda.memory_reserved(device),
        estimate_gb=plan.estimated_memory_gb,
        budget_gb=plan.memory_budget_gb,
    )
    seconds = [float(e["seconds"]) for e in read_json(out / TRAINING_LOG_FILE)["epochs"]]
    return {
        "device_name": torch.cuda.get_device_name(device),
        "torch": torch.__version__,
        "device_profile": plan.device_profile,
        "patch_size": list(plan.patch_size),
        "batch_size": plan.batch_size,
        "classification_shape": list(plan.classification_shape or ()),
        "target_spacing": list(plan.target_spacing),
        "num_parameters": sum(p.numel() for p in JointNet(plan).parameters()),
        "epochs": epochs,
        "iterations_per_epoch": iterations,
        "num_workers": num_workers,
        "epoch_seconds": seconds,
        "iterations_per_second": iterations_per_second(seconds, iterations),
        "wall_seconds": wall,
        **memory,
    }


def measure_prediction(
    work: Path, ct_dir: Path, out_dir: Path, *, device: str = "cuda"
) -> dict[str, Any]:
    """Seconds and peak memory of ``run_prediction`` on ``ct_dir`` (fold ``all``) on the
    CUDA ``device``, without and with mirroring; each after a warm-up pass at the tile
    shape."""
    runs: dict[str, Any] = {}
    for name, use_tta in (("no_mirroring", False), ("mirroring", True)):
        options = PredictOptions(folds=["all"], device=device, use_tta=use_tta)
        warm_up(work, ["all"], options)
        torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        report = run_prediction(ct_dir, out_dir / name, work, options)
        seconds = time.perf_counter() - start
        if not report.ok or not report.timings:
            sys.exit(f"gpu_check: prediction failed: {report.failures}")
        stages = next(iter(report.timings.values()))
        runs[name] = {
            "seconds": seconds,
            "network_seconds": stages.get("network", math.nan),
            "peak_allocated_gb": torch.cuda.max_memory_allocated(device) / GIB,
        }
    return runs


def format_report(results: dict[str, Any]) -> str:
    """The check's numbers as the lines the shell script ends with."""
    lines = ["=== autojoint GPU check ==="]
    t = results.get("training")
    if t:
        lines += [
            f"device: {t['device_name']} ({t['device_gb']:.1f} GB), torch {t['torch']}",
            f"plan: {t['device_profile']}; patch {'x'.join(map(str, t['patch_size']))}, "
            f"batch {t['batch_size']}, view {'x'.join(map(str, t['classification_shape']))}, "
            f"{t['num_parameters'] / 1e6:.1f} M parameters",
            f"training: {t['epochs']} x {t['iterations_per_epoch']} iterations, "
            f"{t['num_workers']} loader workers: {t['iterations_per_second']:.2f} it/s "
            "(epochs after the first)",
            f"  peak allocated {t['peak_allocated_gb']:.2f} GB = {t['peak_over_estimate']:.2f} x "
            f"the plan's estimate {t['estimate_gb']:.2f} GB (budget {t['budget_gb']:.2f} GB)",
            f"  peak reserved by torch {t['peak_reserved_gb']:.2f} GB + outside torch (CUDA "
            f"context) {t['outside_torch_gb']:.2f} GB = "
            f"{t['peak_reserved_gb'] + t['outside_torch_gb']:.2f} GB of {t['device_gb']:.1f} GB",
        ]
    p = results.get("prediction")
    if p:
        size = "x".join(map(str, results.get("ct_size_xyz", CT_SIZE_XYZ)))
        lines.append(f"prediction of a {size} CT ({results.get('ct_source', '?')}):")
        for name, run in p.items():
            lines.append(
                f"  {name.replace('_', ' ')}: {run['seconds']:.1f} s (network "
                f"{run['network_seconds']:.1f} s), peak allocated {run['peak_allocated_gb']:.2f} GB"
            )
    return "\n".join(lines)


def _update_results(path: Path, **entries: Any) -> dict[str, Any]:
    results = read_json(path) if path.is_file() else {}
    results.update(entries)
    write_json(results, path)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("require-cuda", help="exit 1 with the reason when no CUDA device is usable")
    train = sub.add_parser("train", help="train fold all briefly; peak memory and it/s")
    train.add_argument("work", type=Path)
    train.add_argument("--epochs", type=int, default=3)
    train.add_argument("--iterations", type=int, default=100)
    train.add_argument("--num-workers", type=int, default=4)
    train.add_argument("--results", type=Path, default=None)
    make_ct = sub.add_parser("make-ct", help="resample a CT to 512 x 512 x 300 voxels")
    make_ct.add_argument("source", type=Path)
    make_ct.add_argument("output", type=Path)
    make_ct.add_argument("--size", type=int, nargs=3, default=list(CT_SIZE_XYZ))
    make_ct.add_argument("--results", type=Path, default=None)
    predict = sub.add_parser("predict", help="time prediction with and without mirroring")
    predict.add_argument("work", type=Path)
    predict.add_argument("ct_dir", type=Path)
    predict.add_argument("out_dir", type=Path)
    predict.add_argument("--results", type=Path, default=None)
    report = sub.add_parser("report", help="print the results file")
    report.add_argument("results", type=Path)
    args = parser.parse_args(argv)

    if args.command == "report":
        print(format_report(read_json(args.results)))
        return 0
    if args.command == "make-ct":
        image = sitk.ReadImage(str(args.source))
        args.output.parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(resample_to_size(image, args.size), str(args.output))
        if args.results is not None:
            _update_results(args.results, ct_source=args.source.name, ct_size_xyz=args.size)
        return 0
    require_cuda()
    if args.command == "require-cuda":
        return 0
    results = args.results or args.work / RESULTS_FILE
    if args.command == "train":
        measured = measure_training(
            args.work, epochs=args.epochs, iterations=args.iterations, num_workers=args.num_workers
        )
        print(format_report(_update_results(results, training=measured)))
    else:
        measured = measure_prediction(args.work, args.ct_dir, args.out_dir)
        print(format_report(_update_results(results, prediction=measured)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
