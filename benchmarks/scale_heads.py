"""Dice of the fused map against each segmentation head alone, on a 2D fold's held-out slices.

    python -m benchmarks.scale_heads -w WORK [--fold 0] [--variant NAME]
        [--checkpoint checkpoint_final.pt] [--split val] [--heads 3]

Why: the final mask is the eta-weighted sum of every scale's logits, so a finest head that
learns slowly hides behind the coarser ones. Scoring each head on its own (its logits
upsampled to the slice) shows which scales carry the mask. Whole slices of a ``2d`` plan,
read from ``WORK/preprocessed_2d`` and padded to the network's total stride, one pass, no
mirroring; Dice pooled over the slices of ``--split`` (``val`` or ``train`` of the fold in
``splits.json``).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from autojoint.inference.ensemble import load_ensemble
from autojoint.io.workdir import DEFAULT_VARIANT, SPLITS_FILE, preprocessed_dir
from autojoint.networks.fusion import fused_logits
from autojoint.preprocessing.preprocess import load_preprocessed

GROUPS = {"lesion": None, "label 1": 1, "label 2": 2}


def _pooled(pred: np.ndarray, ref: np.ndarray, label: int | None) -> tuple[int, int]:
    p, r = (pred > 0, ref > 0) if label is None else (pred == label, ref == label)
    return 2 * int(np.logical_and(p, r).sum()), int(p.sum() + r.sum())


def head_dice(
    work: Path, fold: str, variant: str, checkpoint: str, split: str, num_heads: int
) -> dict[str, dict[str, float]]:
    """{output: {group: pooled Dice}} for ``fused`` and ``head0``.. ``head{num_heads-1}``."""
    ens = load_ensemble(work, [fold], torch.device("cpu"), "2d", checkpoint, variant)
    net = ens.nets[0]
    stride = [math.prod(s[a] for s in ens.plan.topology.strides) for a in (1, 2)]
    splits = json.loads((work / SPLITS_FILE).read_text(encoding="utf-8"))
    cases = splits[int(fold)][split]
    sums: dict[tuple[str, str], list[int]] = {}
    with torch.no_grad():
        for case_id in cases:
            case = load_preprocessed(preprocessed_dir(work, "2d"), case_id)
            x = torch.from_numpy(np.asarray(case.data, np.float32))[None]
            ref = np.asarray(case.seg).reshape(x.shape[2:])
            y, w = x.shape[3:]
            pad = (0, (-w) % stride[1], 0, (-y) % stride[0])
            scales = net.seg(F.pad(x, pad, value=float(x.min())))
            size = scales[0].shape[2:]
            outputs = {"fused": fused_logits(scales, net.eta, net.options.fusion)}
            for i, s in enumerate(scales[:num_heads]):
                outputs[f"head{i}"] = F.interpolate(s, size=size, mode="trilinear")
            for name, logits in outputs.items():
                pred = logits.argmax(1)[0, :, :y, :w].numpy()
                for group, label in GROUPS.items():
                    a, b = _pooled(pred, ref, label)
                    acc = sums.setdefault((name, group), [0, 0])
                    acc[0] += a
                    acc[1] += b
    out: dict[str, dict[str, float]] = {}
    for (name, group), (a, b) in sums.items():
        out.setdefault(name, {})[group] = a / b if b else float("nan")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-w", "--work-dir", type=Path, required=True)
    parser.add_argument("--fold", default="0")
    parser.add_argument("--variant", default=DEFAULT_VARIANT)
    parser.add_argument("--checkpoint", default="checkpoint_final.pt")
    parser.add_argument("--split", choices=("val", "train"), default="val")
    parser.add_argument("--heads", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    table = head_dice(
        args.work_dir, args.fold, args.variant, args.checkpoint, args.split, args.heads
    )
    print("| output | " + " | ".join(GROUPS) + " |")
    print("|---|" + "---|" * len(GROUPS))
    for name, scores in table.items():
        print(f"| {name} | " + " | ".join(f"{scores[g]:.3f}" for g in GROUPS) + " |")


if __name__ == "__main__":
    main()
