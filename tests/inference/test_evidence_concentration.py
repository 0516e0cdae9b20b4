"""Issue 10: after training, the evidence maps of the diagnosis concentrate on the lesions.

A tiny joint network is trained with the trainer's own step and total loss (segmentation,
diagnosis and task-aware terms) to segment one bright lesion and tell scans with it from
scans without. On held-out diseased scans the CAM and the Grad-CAM of the predicted
class must then be higher inside the reference lesion than in the rest of the scan, and
clearly more so than the same network's maps before training. The benchmark
(benchmarks/multitask_gain.py) reports the same contrast on the demo dataset.

Measured while writing this test: trained on the diagnosis loss alone, the mean-over-units
CAM did not concentrate (contrast 0.95 at 60 steps, accuracy 1.0); the task-aware loss,
which pulls each unit's evidence towards the lesion map, is what places it.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from autojoint.evaluation.evidence import evidence_lesion_contrast
from autojoint.inference.gradcam import grad_cam
from autojoint.networks.joint_net import JointNet
from autojoint.planning.schema import Plan
from autojoint.training.step import make_grad_scaler, train_step
from tests.fingerprints import tiny_plan
from tests.helpers import seeded_net, train_step_options

SHAPE = (8, 32, 32)


@functools.cache
def _plan() -> Plan:
    return tiny_plan(classes=("lesion", "normal"), shape=SHAPE)


def _scans(rng: np.random.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Noise scans; even-numbered ones carry one bright 4x8x8 lesion at a random place."""
    view_shape = _plan().classification_shape
    views = rng.normal(0.0, 0.5, size=(n, 1, *view_shape)).astype(np.float32)
    lesions = np.zeros((n, *view_shape), dtype=bool)
    labels = np.zeros(n, dtype=np.int64)
    for i in range(n):
        if i % 2:
            labels[i] = 1  # normal
            continue
        z = rng.integers(0, view_shape[0] - 4 + 1)
        y, x = (rng.integers(0, s - 8 + 1) for s in view_shape[1:])
        lesions[i, z : z + 4, y : y + 8, x : x + 8] = True
    views[:, 0][lesions] += 2.0
    return torch.from_numpy(views), torch.from_numpy(labels), lesions


def _cam(net: JointNet, view: torch.Tensor) -> np.ndarray:
    """Class activation maps of the predicted class, mean over classifier units, rectified."""
    assert net.cls is not None
    with torch.no_grad():
        _, logits, feats = net.classify(view)
        maps = net.cls.evidence_maps(feats, logits.argmax(1))
    up = [F.interpolate(m, size=view.shape[2:], mode="trilinear") for m in maps]
    return torch.relu(torch.stack(up).mean(0))[:, 0].numpy()


def _contrasts(net: JointNet, views: torch.Tensor, lesions: np.ndarray) -> tuple[float, float]:
    net.eval()
    diseased = [i for i in range(len(views)) if lesions[i].any()]
    cam = _cam(net, views[diseased])
    grad = grad_cam(net, views[diseased]).maps[:, 0].numpy()
    return (
        float(
            np.mean([evidence_lesion_contrast(cam[k], lesions[i]) for k, i in enumerate(diseased)])
        ),
        float(
            np.mean([evidence_lesion_contrast(grad[k], lesions[i]) for k, i in enumerate(diseased)])
        ),
    )


@pytest.mark.slow
def test_trained_evidence_concentrates_on_lesions() -> None:
    net = seeded_net(_plan())
    rng = np.random.default_rng(0)
    test_views, test_labels, test_lesions = _scans(rng, 8)
    before = _contrasts(net, test_views, test_lesions)

    plan = _plan()
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    scaler = make_grad_scaler(torch.device("cpu"))
    net.train()
    # 150 steps: with the task-aware loss on normalised evidence of the reference diagnosis
    # (issue 16) the CAM concentrates more slowly than with the old sigmoid form (contrast
    # 2.27 after 60 steps). Measured at 150 steps, seeds 0 / 1: CAM contrast 4.15 / 4.46
    # with the task-aware loss, 0.63 / 3.37 without it; accuracy 1.0 in all four.
    for _ in range(150):
        views, labels, lesions = _scans(rng, 4)
        masks = torch.from_numpy(lesions.astype(np.int64))  # patch = whole view here
        batch = {
            "data": views,
            "seg": masks,
            "cls_data": views,
            "cls_seg": masks,
            "diagnosis": labels,
            "has_mask": torch.ones(len(views), dtype=torch.bool),
        }
        train_step(
            net,
            net,
            batch,
            optimizer,
            scaler,
            **train_step_options(plan, net.parameters()),
        )

    net.eval()
    with torch.no_grad():
        _, logits, _ = net.classify(test_views)
    accuracy = float((logits.argmax(1) == test_labels).float().mean())
    cam, grad = _contrasts(net, test_views, test_lesions)
    assert accuracy == 1.0, f"the toy diagnosis was not learnt (accuracy {accuracy})"
    assert plan.loss_weights.task_aware > 0
    assert cam > 2.5 and cam > 1.5 * before[0], (cam, before)
    assert grad > 1.5 and grad > 1.5 * before[1], (grad, before)
