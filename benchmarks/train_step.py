"""Seconds per joint training step (forward + losses + backward + Adam) for a plan.

Checks the CPU profile's promise (about 1 s per step on 2 cores) and shows what each
network switch costs, and on a CPU with native bfloat16 what ``autojoint_train --precision
bfloat16`` saves, all measured in one run on random tensors of the plan's shapes. It also
counts the convolution work of one step's forward pass: the patch through the U-Net (what
nnU-Net's network computes at the same patch and widths), the whole-scan view through the
same U-Net and the classifier, so a time per iteration set beside nnU-Net's can be read as
work x speed per unit of work.

    python benchmarks/train_step.py WORK_DIR/plans.json [--steps 8] [--device cpu]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch

from autojoint.losses.joint import joint_loss
from autojoint.networks.blocks import init_weights
from autojoint.networks.joint_net import JointNet
from autojoint.planning.schema import NetworkOptions, Plan
from autojoint.runtime.devices import cpu_supports_bfloat16
from benchmarks.conv_work import conv_macs


def central_boxes(batch: int, device: torch.device | None = None) -> torch.Tensor:
    """Where each patch lies in its view: the central half on every axis (the cross-stitch
    stem crops the view there; other networks ignore it). Shape ``(B, 2, 3)``."""
    return torch.tensor([[0.25] * 3, [0.75] * 3], device=device).expand(batch, 2, 3)


def seconds_per_step(
    plan: Plan, steps: int, device: torch.device, autocast: torch.dtype | None = None
) -> float:
    torch.manual_seed(0)
    net = JointNet(plan)
    init_weights(net)
    net.to(device)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    b, c = plan.batch_size, len(plan.channel_names)
    k = plan.num_labels
    view = plan.classification_shape or (1, 1, 1)  # as preprocessing stores a plan without one
    batch = {
        "data": torch.randn(b, c, *plan.patch_size, device=device),
        "seg": torch.randint(0, k, (b, *plan.patch_size), device=device),
        "cls_data": torch.randn(b, c, *view, device=device),
        "cls_seg": torch.randint(0, k, (b, *view), device=device),
        "diagnosis": torch.randint(0, max(len(plan.classes), 1), (b,), device=device),
        "has_mask": torch.ones(b, dtype=torch.bool, device=device),
        "patch_box": central_boxes(b, device),
    }
    weights = torch.ones(max(len(plan.classes), 1), device=device)
    times = []
    for _ in range(steps + 2):  # the first two steps warm up kernels and are not counted
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        view = batch["cls_data"] if plan.has_diagnosis else None
        with torch.autocast(device.type, dtype=autocast or torch.float32, enabled=bool(autocast)):
            out = net(batch["data"], view, batch["patch_box"])
            loss = joint_loss(net, out, batch, plan.loss_weights, weights, plan.loss).total
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return sum(times[2:]) / steps


def step_work(plan: Plan) -> dict[str, float]:
    """GMAC of one training step's forward convolutions, by part: ``patch`` (the patch
    through the segmentation U-Net), ``view`` (the view through it) and ``classifier``
    (the rest of the joint forward)."""
    net = JointNet(plan)
    b, c = plan.batch_size, len(plan.channel_names)
    patch = torch.zeros(b, c, *plan.patch_size)
    parts = {"patch": conv_macs(net.seg, patch) / 1e9}
    if plan.has_diagnosis and plan.classification_shape:
        view = torch.zeros(b, c, *plan.classification_shape)
        whole = conv_macs(net, patch, view, central_boxes(b)) / 1e9
        parts["view"] = conv_macs(net.seg, view) / 1e9
        parts["classifier"] = whole - parts["patch"] - parts["view"]
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("plans", type=Path)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    plan = Plan.load(args.plans)
    device = torch.device(args.device)
    print(
        f"plan: patch {plan.patch_size}, batch {plan.batch_size}, view "
        f"{plan.classification_shape}, threads {torch.get_num_threads()}, device {device}"
    )
    work = step_work(plan)
    total = sum(work.values())
    print(
        "forward convolution work per step (GMAC): "
        + ", ".join(f"{k} {v:.1f}" for k, v in work.items())
        + f"; total {total:.1f} = {total / work['patch']:.2f}x the patch through the U-Net alone"
    )
    variants = {
        "default": NetworkOptions(),
        "reverse_attention": NetworkOptions(reverse_attention=True),
        "cross_stitch": NetworkOptions(cross_stitch=True),
        "classifier_input=multiply": NetworkOptions(classifier_input="multiply"),
        "refinement_passes=2": NetworkOptions(refinement_passes=2),
    }
    base = None
    for name, options in variants.items():
        s = seconds_per_step(dataclasses.replace(plan, network=options), args.steps, device)
        base = base or s
        print(f"  {name:<28} {s:6.3f} s/step  ({s / base:4.2f}x default)")
    if device.type == "cpu" and cpu_supports_bfloat16():  # autojoint_train --precision bfloat16
        s = seconds_per_step(plan, args.steps, device, torch.bfloat16)
        print(f"  {'default, bfloat16 autocast':<28} {s:6.3f} s/step  ({s / base:4.2f}x default)")


if __name__ == "__main__":
    main()
