"""benchmarks/classifier_probe.py trains the plan's own classification subnet: it must learn
a task whose classes are plainly separable, and the lesion-mask input must be its second
channel; load_views reads saved preprocessed cases (no training data from disk, tiny plan)."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from autojoint.io.image_io import ImageGeometry
from autojoint.io.workdir import preprocessed_dir
from autojoint.planning.schema import Plan
from autojoint.preprocessing.preprocess import PreprocessedCase, save_preprocessed
from benchmarks.classifier_probe import load_views, probe
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


def _save_case(
    work: Path, case_id: str, value: float, diagnosis: str | None, with_seg: bool
) -> None:
    geo = ImageGeometry((4, 4, 2), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    view = np.full((1, 2, 3, 4), value, np.float32)
    view_seg = np.zeros((2, 3, 4), np.int16)
    view_seg[1, 2, 3] = 2
    data = np.zeros((1, 2, 4, 4), np.float32)
    seg = np.zeros((2, 4, 4), np.int16) if with_seg else None
    case = PreprocessedCase(
        case_id, data, seg, view, view_seg if with_seg else None, geo, ((0, 2),) * 3, diagnosis
    )
    save_preprocessed(case, preprocessed_dir(work))


def test_load_views_reads_saved_cases_with_their_mask_and_class(tmp_path: Path) -> None:
    _save_case(tmp_path, "a", 1.0, "CAP", True)
    _save_case(tmp_path, "b", 2.0, "COVID-19", True)
    views, labels = load_views(tmp_path, ["b", "a"], ["COVID-19", "CAP"], with_mask=True)
    assert views.shape == (2, 2, 2, 3, 4) and labels.tolist() == [0, 1]
    assert views[0, 0].eq(2.0).all() and views[1, 0].eq(1.0).all()
    assert views[:, 1].sum().item() == 2.0 and views[0, 1, 1, 2, 3] == 1.0  # lesion > 0 as 1
    image_only, _ = load_views(tmp_path, ["a"], ["COVID-19", "CAP"], with_mask=False)
    assert image_only.shape == (1, 1, 2, 3, 4)
    _save_case(tmp_path, "c", 0.0, None, False)
    with pytest.raises(ValueError, match="no view mask"):
        load_views(tmp_path, ["c"], ["CAP"], with_mask=True)
    with pytest.raises(ValueError, match="c.json: no diagnosis"):
        load_views(tmp_path, ["c"], ["CAP"], with_mask=False)
