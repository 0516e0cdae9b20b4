"""How fast does the whole-scan classifier learn the diagnosis on its own? (issue 21)

    python -m benchmarks.classifier_probe -w WORK [--fold 0] [--input image|reference]
        [--batch 2 4] [--steps 600] [--every 100] [--lr 1e-3] [--seed 0] [--threads 1]

Why: in the multitask benchmark the single-task classifiers stay at chance for their 400
steps of batch 2, so the joint - classification-only accuracy gap could be a budget
artefact. This trains the plan's own classification subnet (``JointNet(plan).cls``) alone
on the preprocessed whole-scan views of ``WORK`` (fold ``--fold`` of ``splits.json``),
without the U-Net, the loader or augmentation, with Adam and plain cross-entropy, and
prints the training cross-entropy (all training views, train mode) and held-out accuracy
every ``--every`` steps, once per batch size. ``--input reference`` adds the reference
lesion mask of the view as the second channel (what the joint classifier reads, with a
perfect segmentation); ``image`` feeds the view alone.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from autojoint.io.workdir import PLANS_FILE, preprocessed_dir
from autojoint.networks.joint_net import JointNet
from autojoint.planning.schema import Plan
from autojoint.preprocessing.preprocess import load_preprocessed
from autojoint.training.splits import fold_cases


def load_views(
    work: Path, cases: list[str], classes: list[str], with_mask: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Views ``(N, C, Z, Y, X)`` (C = 1, or 2 with the lesion mask) and class indices.

    Raises:
        ValueError: a case has no diagnosis, or no view mask while ``with_mask``.
    """
    pre_dir = preprocessed_dir(work)
    views, labels = [], []
    for case in cases:
        pre = load_preprocessed(pre_dir, case, mmap_mode="r")
        view = np.asarray(pre.cls_data, np.float32)
        if with_mask:
            if pre.cls_seg is None:
                raise ValueError(f"{pre_dir / case}: no view mask (cls_seg) for --input reference")
            view = np.concatenate([view, (np.asarray(pre.cls_seg) > 0)[None].astype(np.float32)])
        if pre.diagnosis is None:
            raise ValueError(f"{pre_dir / case}.json: no diagnosis; the probe needs one per case")
        views.append(view)
        labels.append(classes.index(pre.diagnosis))
    return torch.from_numpy(np.stack(views)), torch.tensor(labels)


def probe(
    plan: Plan,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    *,
    image_only: bool,
    batch: int,
    steps: int,
    every: int,
    lr: float,
    seed: int,
) -> list[tuple[int, float, float, float]]:
    """(step, training cross-entropy, held-out accuracy, seconds so far) every ``every``
    steps (the seconds include the evaluations)."""
    torch.manual_seed(seed)
    net_plan = replace(
        plan, network=replace(plan.network, classifier_input="image" if image_only else "concat")
    )
    classifier = JointNet(net_plan).cls
    assert classifier is not None, "the plan has no diagnosis classes"
    optimizer = torch.optim.Adam(classifier.parameters(), lr)
    draw = torch.Generator().manual_seed(seed)
    rows = []
    start = time.perf_counter()
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(train[1]), (batch,), generator=draw)
        loss = F.cross_entropy(classifier(train[0][idx])[0], train[1][idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % every == 0:
            with torch.no_grad():
                ce = F.cross_entropy(classifier(train[0])[0], train[1]).item()
                acc = (classifier(val[0])[0].argmax(1) == val[1]).float().mean().item()
            rows.append((step, ce, acc, time.perf_counter() - start))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-w", "--work", type=Path, required=True)
    parser.add_argument("--fold", default="0")
    parser.add_argument("--input", choices=("image", "reference"), default="image")
    parser.add_argument("--batch", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    plan = Plan.load(args.work / PLANS_FILE)
    classes = list(plan.classes)
    train_ids, val_ids = fold_cases(args.work, args.fold)
    with_mask = args.input == "reference"
    train = load_views(args.work, train_ids, classes, with_mask)
    val = load_views(args.work, val_ids, classes, with_mask)
    print(
        f"fold {args.fold}: {len(train_ids)} training / {len(val_ids)} held-out views "
        f"{tuple(train[0].shape[2:])}, input {args.input}, Adam lr {args.lr:g}, seed {args.seed}"
    )
    print("| batch | step | training cross-entropy | held-out accuracy | seconds |")
    print("|---|---|---|---|---|")
    for batch in args.batch:
        for step, ce, acc, seconds in probe(
            plan,
            train,
            val,
            image_only=not with_mask,
            batch=batch,
            steps=args.steps,
            every=args.every,
            lr=args.lr,
            seed=args.seed,
        ):
            print(f"| {batch} | {step} | {ce:.3f} | {acc:.3f} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
