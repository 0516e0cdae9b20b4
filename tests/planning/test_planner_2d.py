"""2D data and the 2d configuration: planning slices, for 2D datasets and 3D ones."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from autojoint.io.image_io import SLICE_SPACING_2D_MM
from autojoint.planning.planner import plan_experiment
from autojoint.planning.schema import Plan, is_slice_topology
from tests.fingerprints import make_fingerprint
from tests.helpers import seeded_net


def flat(n: int = 20, spacing=(0.7, 0.7), shape=(512, 512), **kw) -> object:
    """A 2D dataset of ``n`` slices (MSD-Net-like CT slices)."""
    return make_fingerprint(
        [(SLICE_SPACING_2D_MM, *spacing)] * n,
        [(1, *shape)] * n,
        is_2d=True,
        lesion_volumes_mm3=(300.0, 40.0),
        **kw,
    )


def _check_slice_plan(plan: Plan) -> None:
    assert plan.patch_size[0] == 1
    assert all(k[0] == 1 for k in plan.topology.kernel_sizes)
    assert all(s[0] == 1 for s in plan.topology.strides)
    assert is_slice_topology(plan.patch_size, plan.topology)
    assert plan.validate() == []


def test_2d_dataset_plans_the_2d_configuration() -> None:
    plan = plan_experiment(flat(), memory_budget_gb=8.0, device_profile="gpu")
    assert plan.configuration == "2d"
    assert plan.lowres is None and plan.two_d is None
    _check_slice_plan(plan)
    assert plan.target_spacing == (SLICE_SPACING_2D_MM, 0.7, 0.7)
    assert plan.transpose_forward == (0, 1, 2)
    assert plan.median_shape == (1, 512, 512)
    # In-plane pooling as a 2D U-Net: every stage after the first halves y and x.
    assert all(s[1:] == (2, 2) for s in plan.topology.strides[1:])
    assert plan.topology.num_stages >= 5
    # The whole slice is the classification view, shrunk in-plane only.
    view = plan.classification_shape
    assert view[0] == 1 and math.prod(view) <= math.prod(plan.patch_size)
    assert view[1] % plan.topology.total_stride[1] == 0
    assert "2D images" in plan.reasons["patch_size"]


def test_2d_plan_ignores_the_nominal_slice_spacing() -> None:
    # In-plane spacing coarser than the nominal 1 mm slice: no transposition, no z kernel.
    plan = plan_experiment(
        flat(spacing=(2.0, 2.0), shape=(200, 200)), memory_budget_gb=8.0, device_profile="gpu"
    )
    assert plan.transpose_forward == (0, 1, 2)
    _check_slice_plan(plan)
    assert plan.target_spacing == (SLICE_SPACING_2D_MM, 2.0, 2.0)


def test_2d_patch_and_batch_grow_with_the_budget() -> None:
    fp = flat(n=400, shape=(1024, 1024))
    plans = [
        plan_experiment(fp, memory_budget_gb=g, device_profile="gpu") for g in (0.5, 2.0, 8.0, 32.0)
    ]
    sizes = [math.prod(p.patch_size) * p.batch_size for p in plans]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    for p in plans:
        _check_slice_plan(p)
        assert p.estimated_memory_gb <= p.memory_budget_gb


def test_2d_plan_refuses_3d_configurations() -> None:
    plan = plan_experiment(flat(), memory_budget_gb=8.0, device_profile="gpu")
    assert plan.for_configuration("2d") is plan
    for name in ("fullres", "lowres"):
        with pytest.raises(ValueError, match="only configuration is 2d. Pass -c 2d"):
            plan.for_configuration(name)


def test_3d_dataset_gets_a_2d_configuration_of_its_slices(tmp_path: Path) -> None:
    fp = make_fingerprint([(3.0, 0.8, 0.8)] * 10, [(100, 400, 400)] * 10)
    plan = plan_experiment(fp, memory_budget_gb=8.0, device_profile="gpu")
    assert plan.configuration == "fullres" and plan.two_d is not None
    two = plan.for_configuration("2d")
    assert two.configuration == "2d" and two.two_d is None and two.lowres is None
    _check_slice_plan(two)
    # Slices of the full-resolution grid, thick axis first; the view stays the whole volume.
    assert two.target_spacing == plan.target_spacing
    assert two.patch_size[1:] == (400, 400) or math.prod(two.patch_size[1:]) > 192 * 192
    assert two.classification_shape[0] > 1
    assert two.transpose_forward == plan.transpose_forward
    plan.save(tmp_path / "plans.json")
    assert Plan.load(tmp_path / "plans.json") == plan
    with pytest.raises(ValueError, match="no 'lowres' configuration"):
        two.for_configuration("lowres")


def test_2d_eta_uses_in_plane_scales_and_disc_diameters() -> None:
    # Lesions of 300 mm² (a 19.5 mm disc) and 40 mm² (7.1 mm) at 0.7 mm pixels: a scale
    # resolves a lesion when its diameter spans two of its voxels (in-plane edge 0.7 * 2^s).
    plan = plan_experiment(flat(), memory_budget_gb=8.0, device_profile="gpu")
    d = np.sqrt(4 * np.array([300.0, 40.0]) / np.pi)
    edges = [0.7 * 2**s for s in range(plan.topology.num_stages)]
    share = np.array([np.mean(d >= 2 * e) for e in edges])
    np.testing.assert_allclose(plan.eta, share / share.sum())


def test_2d_classifier_neither_strides_nor_convolves_the_one_slice() -> None:
    plan = plan_experiment(
        flat(6, shape=(64, 64)), memory_budget_gb=0.05, device_profile="cpu", base_features=4
    )
    assert plan.classification_shape[0] == 1
    net = seeded_net(plan)
    assert net.cls is not None
    for unit in net.cls.units:
        conv = unit.body[0].conv
        assert conv.kernel_size[0] == 1 and conv.stride[0] == 1 and conv.padding[0] == 0
        assert conv.kernel_size[1:] == (3, 3) and conv.stride[1:] == (2, 2)
    # Reference: the first unit's conv is a 2D conv with the kernel's only z-slice.
    conv = net.cls.units[0].body[0].conv
    x = torch.randn(2, conv.in_channels, *plan.classification_shape)
    expected = F.conv2d(x[:, :, 0], conv.weight[:, :, 0], conv.bias, stride=2, padding=1)
    torch.testing.assert_close(conv(x)[:, :, 0], expected)
    _, logits, feats = net.train().classify(torch.randn(2, 1, *plan.classification_shape))
    assert logits.shape == (2, len(plan.classes))
    assert all(f.shape[2] == 1 for f in feats)
