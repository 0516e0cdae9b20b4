"""Issue 16, defect 4: a rare lesion label is learnt with the planned default loss.

Toy scans: a ground-glass block in every scan, a small consolidation core (0.6 % of the
voxels) in a third of them, each label a distinct brightness. A tiny network trained 120
steps either picks the core up or never predicts it, depending on the seed. Measured over
seeds 0-7 (2026-12-01, deep-supervision targets downsampled to the voxel nearest each
coarse centre): with the plain Dice + CE of the old default it never did (Dice 0.0 for all
eight); with the lesion-label weights the planner now sets for the cross-entropy (here
0.99, 1.01, 4.86) it did for seeds 1, 4, 5 (Dice 0.41, 0.85, 0.30), the other five 0.0.
With the earlier `nearest` targets the weighted loss learnt it for seeds 0, 1, 4, 5 (0.23,
0.47, 0.79, 0.37; mean over the eight 0.23 against 0.20 now): on this toy the target
change costs seed 0 and nothing measurable on the mean. The test used to check seeds 0
and 1 only.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
import torch

from autojoint.losses.joint import joint_loss
from autojoint.networks.fusion import fuse_scales
from autojoint.planning.planner import lesion_label_weights_from
from autojoint.planning.schema import Plan
from tests.fingerprints import tiny_plan
from tests.helpers import seeded_net

SHAPE = (8, 32, 32)
STEPS = 120


def _toy(rng: np.random.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    image = rng.normal(0.0, 0.6, (n, 1, *SHAPE)).astype(np.float32)
    label = np.zeros((n, *SHAPE), np.int64)
    for i in range(n):
        z, y, x = rng.integers(0, 4), rng.integers(0, 20), rng.integers(0, 20)
        label[i, z : z + 4, y : y + 10, x : x + 10] = 1
        if i % 3 == 0:
            label[i, z + 1 : z + 3, y + 2 : y + 7, x + 2 : x + 7] = 2
    image[:, 0][label == 1] += 0.8
    image[:, 0][label == 2] += 1.6
    return torch.from_numpy(image), torch.from_numpy(label)


@functools.cache
def _plan() -> Plan:
    """The planned default loss, with the label weights the planner derives from the toy's
    voxel fractions (tiny_plan's fingerprint gives every lesion label the same fraction)."""
    plan = tiny_plan(classes=(), shape=SHAPE)
    _, label = _toy(np.random.default_rng(123), 30)
    fractions = np.bincount(label.numpy().ravel(), minlength=3) / label.numel()
    weights = lesion_label_weights_from([float(f) for f in fractions])
    return dataclasses.replace(plan, loss=dataclasses.replace(plan.loss, ce_class_weights=weights))


def _consolidation_dice(seed: int) -> float:
    plan = _plan()
    net = seeded_net(plan, seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    rng = np.random.default_rng(seed)
    has_mask = torch.ones(2, dtype=torch.bool)
    for _ in range(STEPS):
        image, label = _toy(rng, 2)
        parts = joint_loss(
            net,
            net(image),
            {"seg": label, "has_mask": has_mask},
            plan.loss_weights,
            torch.ones(1),
            plan.loss,
        )
        optimizer.zero_grad()
        parts.total.backward()
        optimizer.step()
    image, label = _toy(np.random.default_rng(99), 12)
    net.eval()
    with torch.no_grad():
        pred = fuse_scales(net(image).patch_scales, net.eta).argmax(1)
    hit, ref = pred == 2, label == 2
    return float(2 * (hit & ref).sum() / (hit.sum() + ref.sum()))


@pytest.mark.slow
def test_rare_label_is_learnt_with_the_default_loss() -> None:
    assert _plan().loss.segmentation == "dice_ce" and _plan().loss.weighted_ce
    dice = [_consolidation_dice(seed) for seed in range(6)]
    assert sum(d > 0.1 for d in dice) >= 2 and max(dice) > 0.3, dice
