"""Tiny networks, random batches and training-step options shared by the network, loss
and training tests.

Plain functions, not fixtures: several tests build nets from plans made inside the test,
and ``tests/training/test_distributed.py`` builds them in spawned processes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from autojoint.networks.blocks import LAYERS_3D, LayerTypes, init_weights
from autojoint.networks.joint_net import JointNet
from autojoint.planning.schema import LossWeights, Plan


def seeded_net(plan: Plan, seed: int = 0, layers: LayerTypes = LAYERS_3D) -> JointNet:
    """A ``JointNet`` initialised by ``init_weights`` after ``torch.manual_seed(seed)``:
    two calls with one seed give equal weights (training mode, as constructed)."""
    torch.manual_seed(seed)
    net = JointNet(plan, layers)
    init_weights(net)
    return net


def scale_shapes(plan: Plan, size: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Spatial shape of each decoder scale for an input of ``size``, finest first."""
    shapes, cur = [], list(size)
    for stride in plan.topology.strides:
        cur = [c // s for c, s in zip(cur, stride, strict=True)]
        shapes.append(tuple(cur))
    return shapes


def random_batch(plan: Plan, seed: int = 0) -> dict[str, torch.Tensor]:
    """Two random training samples at the plan's patch and view (one per first two classes,
    random labels everywhere, both with masks): what ``train_step`` takes."""
    g = torch.Generator().manual_seed(seed)
    assert plan.classification_shape is not None
    k = plan.num_labels
    return {
        "data": torch.randn(2, 1, *plan.patch_size, generator=g),
        "seg": torch.randint(0, k, (2, *plan.patch_size), generator=g),
        "cls_data": torch.randn(2, 1, *plan.classification_shape, generator=g),
        "cls_seg": torch.randint(0, k, (2, *plan.classification_shape), generator=g),
        "diagnosis": torch.tensor([0, 1]),
        "has_mask": torch.ones(2, dtype=torch.bool),
    }


def lesion_batch(plan: Plan, seed: int = 0, noise: float = 0.1) -> dict[str, torch.Tensor]:
    """Two samples whose images are their lesion maps plus Gaussian noise of sd ``noise``:
    sample 0 holds one ground-glass block, sample 1 also a consolidation block, at the
    patch and at the view (an empty view when the plan has no classes). Unlike
    ``random_batch`` the labels are spatially coherent, so region losses see real lesions."""
    g = torch.Generator().manual_seed(seed)
    B = 2

    def lesion_map(shape: tuple[int, ...]) -> torch.Tensor:
        seg = torch.zeros(B, *shape, dtype=torch.long)
        seg[:, 2:6, 4:10, 4:10] = 1
        seg[1, 3:5, 10:14, 2:6] = 2
        return seg

    view = plan.classification_shape or (0, 0, 0)
    seg, cls_seg = lesion_map(plan.patch_size), lesion_map(view)
    data = torch.randn(B, 1, *plan.patch_size, generator=g) * noise + seg[:, None].float()
    cls_data = torch.randn(B, 1, *view, generator=g) * noise + cls_seg[:, None].float()
    return {
        "data": data,
        "seg": seg,
        "cls_data": cls_data,
        "cls_seg": cls_seg,
        "diagnosis": torch.tensor([0, 1]),
        "has_mask": torch.tensor([True, True]),
    }


def train_step_options(
    plan: Plan,
    params: Iterable[torch.nn.Parameter],
    weights: LossWeights | None = None,
) -> dict[str, Any]:
    """The keyword arguments of ``train_step`` the tests share: the plan's loss weights
    (or ``weights``) and loss options, unit class weights, the view, clipping at 12."""
    return {
        "weights": plan.loss_weights if weights is None else weights,
        "class_weights": torch.ones(len(plan.classes)),
        "loss_options": plan.loss,
        "use_view": True,
        "grad_clip": 12.0,
        "params": params,
    }
