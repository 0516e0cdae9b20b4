"""What flushing subnormal floats to zero (``runtime.devices.subnormals_flushed``, on in
autojoint's training steps and inference engine) saves when a network's activations fall below
float32's smallest normal number (1.2e-38), as in the untrained U-Net of a
classification-only run whose weights shrink under weight decay.

    python -m benchmarks.denormals [--checkpoint RUN_DIR] [--steps 2]

Without ``--checkpoint``: five 3D conv + leaky ReLU layers (16 channels, 12 x 24 x 32,
one sample), the second's weights scaled by 1e-38 so that every later activation is subnormal,
timed forward and backward. With ``--checkpoint``: the
``fold_0/checkpoint_latest.pt`` of that run folder, at its plan's patch and view, on random
input. One thread (the flag is toggled on the main thread, which a single-threaded run
uses alone); flag off, on, off, on, each after a warm-up step. Prints seconds per step and
the ratio on / off.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import torch


def synthetic_step() -> Callable[[], None]:
    """Forward and backward of a conv stack whose deeper activations are subnormal."""
    torch.manual_seed(0)
    convs = [torch.nn.Conv3d(1 if i == 0 else 16, 16, 3, padding=1) for i in range(5)]
    with torch.no_grad():
        convs[1].weight.mul_(1e-38)  # from here on the activations are about 1e-39
        for conv in convs[1:]:
            conv.bias.zero_()
    layers: list[torch.nn.Module] = []
    for conv in convs:
        layers += [conv, torch.nn.LeakyReLU(0.01)]
    net = torch.nn.Sequential(*layers)
    x = torch.randn(1, 1, 12, 24, 32)

    def step() -> None:
        net.zero_grad()
        net(x).float().sum().backward()

    return step


def checkpoint_step(run: Path) -> Callable[[], None]:
    """Forward and backward of a trained run's joint network at its plan's shapes."""
    from autojoint.inference.ensemble import load_ensemble

    ensemble = load_ensemble(run, ["0"], torch.device("cpu"), checkpoint="checkpoint_latest.pt")
    net, plan = ensemble.nets[0], ensemble.plan
    net.train()
    torch.manual_seed(0)
    patch = torch.randn(2, 1, *plan.patch_size)
    view = torch.randn(2, 1, *plan.classification_shape) if plan.classification_shape else None

    def step() -> None:
        net.zero_grad()
        out = net(patch, view)
        loss = sum(s.float().mean() for s in out.patch_scales)
        if out.class_logits is not None:
            loss = loss + out.class_logits.float().sum()
        loss.backward()

    return step


def seconds(step: Callable[[], None], flush: bool, steps: int) -> float:
    torch.set_flush_denormal(flush)
    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="a run folder holding fold_0/")
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if not torch.set_flush_denormal(False):
        raise SystemExit("this CPU cannot flush subnormal floats to zero: nothing to measure")
    step = checkpoint_step(args.checkpoint) if args.checkpoint else synthetic_step()
    times: dict[bool, list[float]] = {False: [], True: []}
    for flush in (False, True, False, True):
        times[flush].append(seconds(step, flush, args.steps))
        print(f"flush {'on ' if flush else 'off'}: {times[flush][-1]:.3f} s/step", flush=True)
    off, on = min(times[False]), min(times[True])
    print(f"best of two: off {off:.3f} s, on {on:.3f} s; on / off = {on / off:.3f}")


if __name__ == "__main__":
    main()
