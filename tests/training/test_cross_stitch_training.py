"""A cross-stitch network trains end to end: the loader's patch boxes survive augmentation
and reach the stem through ``batch_to_device`` and ``train_step``; the per-epoch validation
loss and the full-case validation (sliding window with the view) run with boxes too."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from autojoint.data.augmentation import (
    augmentation_spec,
    make_batch_iterator,
    training_transforms,
)
from autojoint.data.loader import JointDataLoader
from autojoint.io.workdir import preprocessed_dir
from autojoint.pipeline import plan_and_preprocess
from autojoint.planning.schema import Plan
from autojoint.preprocessing.preprocess import list_preprocessed
from autojoint.training.step import (
    batch_to_device,
    make_grad_scaler,
    train_step,
    validation_loss,
)
from autojoint.training.validation import validate_cases
from tests.helpers import seeded_net, train_step_options
from tests.synthetic import make_raw_dataset


@pytest.fixture(scope="module")
def stitched(tmp_path_factory: pytest.TempPathFactory) -> tuple[Plan, Path, list[str]]:
    root = tmp_path_factory.mktemp("stitch")
    raw = make_raw_dataset(root / "raw", num_cases=3)
    work = root / "work"
    plan = plan_and_preprocess(raw, work, overrides=["network.cross_stitch=true"])
    assert plan.network.cross_stitch
    # A narrow network: only the wiring is under test.
    narrow = tuple(min(4 * 2**s, 16) for s in range(plan.topology.num_stages))
    plan = dataclasses.replace(
        plan, topology=dataclasses.replace(plan.topology, features_per_stage=narrow)
    )
    pre = preprocessed_dir(work)
    return plan, pre, list_preprocessed(pre)


def test_cross_stitch_training_step_end_to_end(stitched: tuple[Plan, Path, list[str]]) -> None:
    plan, pre, cases = stitched
    spec = augmentation_spec("default", plan.patch_size, plan.target_spacing)
    loader = JointDataLoader(
        pre,
        cases,
        patch_size=plan.patch_size,
        batch_size=2,
        classes=plan.classes,
        seed=0,
        oversample_foreground=0.5,
        loaded_patch_size=spec.loaded_patch_size,
    )
    transforms = training_transforms(spec, plan.patch_size, plan.classification_shape)
    batches = make_batch_iterator(loader, 0, 0, transforms)
    net = seeded_net(plan)
    assert net.stem is not None
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, 1e-3)
    stitch_before = net.stem.stitch.weight.detach().clone()
    cpu = torch.device("cpu")
    kwargs = train_step_options(plan, params)
    for _ in range(2):
        batch = batch_to_device(next(batches), cpu)
        box = batch["patch_box"]
        assert box.dtype == torch.float32 and tuple(box.shape) == (2, 2, 3)
        assert tuple(batch["data"].shape[2:]) == tuple(plan.patch_size)
        parts = train_step(net, net, batch, optimizer, make_grad_scaler(cpu), **kwargs)
        assert math.isfinite(float(parts.total.detach()))
    grad = net.stem.stitch.weight.grad
    assert grad is not None
    assert grad[0, 1] != 0  # the view's features reached the patch through the box crop
    assert grad[1, 0] == 0  # the view takes no patch features (as classify(view) at inference)
    assert not torch.equal(net.stem.stitch.weight.detach(), stitch_before)
    # A batch without boxes is refused, not squeezed whole into the patch.
    del batch["patch_box"]
    with pytest.raises(ValueError, match="box"):
        train_step(net, net, batch, optimizer, make_grad_scaler(cpu), **kwargs)


def test_cross_stitch_validation_runs_with_boxes(stitched: tuple[Plan, Path, list[str]]) -> None:
    plan, pre, cases = stitched
    net = seeded_net(plan)
    losses = validation_loss(
        net,
        plan,
        pre,
        cases[:2],
        weights=plan.loss_weights,
        class_weights=torch.ones(len(plan.classes)),
        num_batches=1,
        seed=0,
        device=torch.device("cpu"),
    )
    assert all(np.isfinite(v) for v in losses.values())
    summary = validate_cases(net, plan, pre, cases[:1], torch.device("cpu"))
    assert summary["num_cases"] == 1
