"""Iterations per second of the data pipeline alone vs the training step, for a work dir.

The loader must not be the bottleneck: the ratio loader / step should be well above 1
(with ``-j`` worker processes it multiplies roughly by the worker count, cores allowing).

    python benchmarks/train_throughput.py WORK_DIR [--iterations 20] [--augmentation default]
        [--num-workers 0] [--device auto]

WORK_DIR is an ``autojoint_plan`` output (e.g. ``demo_run/work`` after scripts/demo.sh).
Prints loader it/s (load + augment), step it/s (forward + loss + backward + optimiser on a
fixed batch) and end-to-end it/s (both, as the trainer runs them).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from autojoint.data.augmentation import (
    AUGMENTATION_PRESETS,
    augmentation_spec,
    batch_iterator,
    training_transforms,
)
from autojoint.data.loader import JointDataLoader
from autojoint.io.workdir import PLANS_FILE, preprocessed_dir
from autojoint.networks.blocks import init_weights
from autojoint.networks.joint_net import JointNet
from autojoint.planning.schema import Plan
from autojoint.preprocessing.preprocess import list_preprocessed
from autojoint.runtime.devices import resolve_device
from autojoint.training.schedule import make_optimizer
from autojoint.training.step import batch_to_device, make_grad_scaler, train_step


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work_dir", type=Path)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--augmentation", choices=AUGMENTATION_PRESETS, default="default")
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    plan = Plan.load(args.work_dir / PLANS_FILE)
    pre = preprocessed_dir(args.work_dir)
    ids = list_preprocessed(pre)
    device = resolve_device(args.device)
    spec = augmentation_spec(args.augmentation, plan.patch_size, plan.target_spacing)
    loader = JointDataLoader(
        pre,
        ids,
        patch_size=plan.patch_size,
        batch_size=plan.batch_size,
        classes=plan.classes,
        seed=0,
        num_workers=max(args.num_workers, 1),
        loaded_patch_size=spec.loaded_patch_size,
    )
    view = plan.classification_shape if plan.has_diagnosis else None
    transforms = training_transforms(spec, plan.patch_size, view)
    n = args.iterations
    with batch_iterator(loader, args.num_workers, 0, transforms) as batches:
        next(batches)  # workers start, caches warm
        t0 = time.perf_counter()
        for _ in range(n):
            next(batches)
        loader_rate = _rate(n, time.perf_counter() - t0)

        torch.manual_seed(0)
        net = JointNet(plan)
        init_weights(net)
        net.to(device)
        params = list(net.parameters())
        opt = make_optimizer("sgd", params, 1e-2, 3e-5)
        scaler = make_grad_scaler(device)
        class_weights = torch.tensor(plan.class_weights or [1.0], device=device)
        fixed = batch_to_device(next(batches), device)

        def step(batch: dict[str, torch.Tensor]) -> None:
            train_step(
                net,
                net,
                batch,
                opt,
                scaler,
                weights=plan.loss_weights,
                class_weights=class_weights,
                loss_options=plan.loss,
                use_view=plan.has_diagnosis,
                grad_clip=12.0,
                params=params,
            )

        step(fixed)
        t0 = time.perf_counter()
        for _ in range(n):
            step(fixed)
        step_rate = _rate(n, time.perf_counter() - t0)

        t0 = time.perf_counter()
        for _ in range(n):
            step(batch_to_device(next(batches), device))
        both_rate = _rate(n, time.perf_counter() - t0)
    print(
        f"plan: patch {plan.patch_size}, batch {plan.batch_size}, view "
        f"{plan.classification_shape}, widths {plan.topology.features_per_stage}; "
        f"device {device}, torch threads {torch.get_num_threads()}, augmentation "
        f"{args.augmentation} (loaded patch {spec.loaded_patch_size}), workers {args.num_workers}"
    )
    print(f"loader only      : {loader_rate:7.2f} it/s")
    print(f"train step only  : {step_rate:7.2f} it/s")
    print(f"loader + step    : {both_rate:7.2f} it/s")
    print(f"loader / step    : {loader_rate / step_rate:7.2f}x (> 1: the loader keeps up)")


if __name__ == "__main__":
    main()
