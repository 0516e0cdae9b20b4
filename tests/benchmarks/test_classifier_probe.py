"""benchmarks/classifier_probe.py trains the plan's own classification subnet: it must learn
a task whose classes are plainly separable, and the lesion-mask input must be its second
channel (no training data from disk, tiny plan)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from autojoint.planning.schema import Plan
from benchmarks.classifier_probe import probe
from tests.fingerprints import tiny_plan


def _separable(shape: tuple[int, ...], per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class k: a bright cube in the k-th third of the volume along x, noise elsewhere."""
    gen = torch.Generator().manual_seed(1)
    views, labels = [], []
    third = shape[2] // 3
    for k in range(3):
        for _ in range(per_class):
            view = 0.1 * torch.randn(1, *shape, generator=gen)
            view[0, 4:12, 8:24, k * third : (k + 1) * third] += 3.0
            views.append(view)
            labels.append(k)
    return torch.stack(views), torch.tensor(labels)


def test_probe_learns_a_separable_task_and_reports_every_step() -> None:
    plan = tiny_plan()
    data = _separable(plan.classification_shape, 2)
    rows = probe(plan, data, data, image_only=True, batch=3, steps=20, every=10, lr=3e-3, seed=0)
    assert [r[0] for r in rows] == [10, 20]
    assert all(b[3] >= a[3] for a, b in itertools.pairwise(rows))  # seconds so far
    _, ce, acc, _ = rows[-1]
    assert rows[1][1] < rows[0][1] < math.log(3)  # falling, from below chance
    assert ce < 0.65 * math.log(3)
    assert acc == 1.0


def _one_step(plan: Plan, data: tuple[torch.Tensor, torch.Tensor]) -> list:
    """One step of the image + lesion-mask classifier, scored on its own data."""
    return probe(plan, data, data, image_only=False, batch=3, steps=1, every=1, lr=1e-3, seed=0)


def test_reference_input_is_a_second_channel() -> None:
    plan = tiny_plan()
    image, labels = _separable(plan.classification_shape, 1)
    with_mask = torch.cat([image, (image > 1).float()], dim=1)
    assert len(_one_step(plan, (with_mask, labels))) == 1
    with pytest.raises(RuntimeError):  # the concat classifier takes 2 channels, not 1
        _one_step(plan, (image, labels))
