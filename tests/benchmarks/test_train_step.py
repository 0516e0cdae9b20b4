"""The convolution work count of benchmarks/train_step.py (docs/benchmarks.md sets
autojoint's seconds per iteration beside nnU-Net's with it)."""

from __future__ import annotations

import dataclasses

import torch

from benchmarks.conv_work import conv_macs
from benchmarks.train_step import step_work
from tests.fingerprints import tiny_plan


def test_conv_macs_known_answers() -> None:
    conv = torch.nn.Conv3d(2, 4, kernel_size=3, padding=1)
    # 4 x 4 x 4 output voxels x 4 output channels, each 27 x 2 multiply-adds.
    assert conv_macs(conv, torch.zeros(1, 2, 4, 4, 4)) == 64 * 4 * 27 * 2
    strided = torch.nn.Conv3d(2, 4, kernel_size=3, stride=2, padding=1)
    assert conv_macs(strided, torch.zeros(1, 2, 4, 4, 4)) == 8 * 4 * 27 * 2
    up = torch.nn.ConvTranspose3d(4, 2, kernel_size=2, stride=2)
    # Each of the 2 x 2 x 2 input voxels goes through 2 x 2 x 2 taps, 4 -> 2 channels.
    assert conv_macs(up, torch.zeros(1, 4, 2, 2, 2)) == 8 * 8 * 4 * 2
    grouped = torch.nn.Conv2d(4, 4, kernel_size=3, padding=1, groups=4)
    assert conv_macs(grouped, torch.zeros(3, 4, 5, 5)) == 3 * 25 * 4 * 9


def test_step_work_splits_the_joint_forward() -> None:
    plan = tiny_plan()
    work = step_work(plan)
    assert set(work) == {"patch", "view", "classifier"}
    # tiny_plan's view has the patch's shape: the same U-Net does the same work on it.
    assert plan.classification_shape == plan.patch_size
    assert abs(work["view"] - work["patch"]) < 1e-9
    assert work["classifier"] > 0
    # Work grows with the batch in proportion.
    doubled = step_work(dataclasses.replace(plan, batch_size=2 * plan.batch_size))
    for part, gmac in work.items():
        assert abs(doubled[part] - 2 * gmac) < 1e-6 * gmac


def test_segmentation_only_plans_have_no_view_work() -> None:
    assert set(step_work(tiny_plan(classes=()))) == {"patch"}
