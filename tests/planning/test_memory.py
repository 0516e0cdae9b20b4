"""The memory model: network switches, calibration against the real network's saved
activations, and the budget from the detected GPU (or the CPU profile)."""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from autojoint.networks.joint_net import JointNet
from autojoint.pipeline import plan_and_preprocess
from autojoint.planning import planner
from autojoint.planning.planner import (
    CPU_PROFILE_BUDGET_GB,
    CUDA_RESERVE_GB,
    detect_memory_budget,
    plan_experiment,
    usable_budget_gb,
)
from autojoint.planning.resolution import estimate_activation_elements, estimate_memory_gb
from autojoint.planning.schema import NetworkOptions, Plan
from tests.fingerprints import chest_ct_fingerprint, make_fingerprint, tiny_plan
from tests.synthetic import make_raw_dataset

SWITCHES = {
    "plain": NetworkOptions(),
    "reverse attention": NetworkOptions(reverse_attention=True),
    "cross-stitch stem": NetworkOptions(cross_stitch=True),
    "refinement n=2": NetworkOptions(refinement_passes=2),
    "multiply input": NetworkOptions(classifier_input="multiply"),
    "per-label input": NetworkOptions(classifier_input="labels"),
    "all": NetworkOptions(
        reverse_attention=True, cross_stitch=True, classifier_input="multiply", refinement_passes=2
    ),
    "pyramid conv": NetworkOptions(pyramid_conv=True),
    "channel attention": NetworkOptions(channel_attention=True),
    "residual refinement": NetworkOptions(residual_refinement=True),
    "msd-net": NetworkOptions(pyramid_conv=True, channel_attention=True, residual_refinement=True),
}
# The estimate stays within this factor of the elements the real network saves for backward.
CALIBRATION_FACTOR = 1.5


def saved_activation_elements(net: JointNet, patch: torch.Tensor, view: torch.Tensor) -> int:
    """Elements of every distinct tensor storage autograd saves for backward in one forward
    pass: what a training step holds in memory besides the weights."""
    sizes: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        sizes[storage.data_ptr()] = storage.nbytes() // t.element_size()
        return t

    # Where the patch lies in the view (the cross-stitch stem needs it): the whole view.
    box = torch.tensor([[0.0] * (patch.ndim - 2), [1.0] * (patch.ndim - 2)]).expand(
        patch.shape[0], 2, patch.ndim - 2
    )
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        net(patch, view, box)
    return sum(sizes.values())


def _plans() -> list[Plan]:
    slices = make_fingerprint([(1.0, 0.7, 0.7)] * 6, [(1, 48, 48)] * 6, is_2d=True)
    thick = make_fingerprint([(3.0, 0.8, 0.8)] * 6, [(8, 32, 32)] * 6)
    small = {"memory_budget_gb": 0.05, "device_profile": "cpu", "base_features": 4}
    return [
        tiny_plan(shape=(16, 24, 24)),
        plan_experiment(slices, max_features=16, **small),
        plan_experiment(thick, max_features=16, **small),
    ]


@pytest.mark.parametrize("name", list(SWITCHES))
def test_estimate_tracks_the_real_network(name: str) -> None:
    torch.manual_seed(0)
    for base in _plans():
        plan = dataclasses.replace(base, network=SWITCHES[name])
        net = JointNet(plan)
        patch = torch.randn(1, 1, *plan.patch_size)
        view = torch.randn(1, 1, *plan.classification_shape)
        measured = saved_activation_elements(net, patch, view)
        estimate = estimate_activation_elements(
            plan.patch_size,
            plan.topology,
            classification_shape=plan.classification_shape,
            network=plan.network,
            num_labels=plan.num_labels,
        )
        ratio = estimate / measured
        assert 1 / CALIBRATION_FACTOR <= ratio <= CALIBRATION_FACTOR, (plan.patch_size, ratio)


def test_every_switch_costs_memory() -> None:
    plan = tiny_plan()
    args = (plan.patch_size, plan.topology, 2)
    assert plan.num_labels == 3  # "labels" reads two lesion channels where "concat" reads one
    view = {"classification_shape": plan.classification_shape, "num_labels": plan.num_labels}
    plain = estimate_memory_gb(*args, **view)
    for name, options in SWITCHES.items():
        cost = estimate_memory_gb(*args, **view, network=options)
        if name in ("multiply input", "channel attention"):
            # The product has C channels, the concatenation C + 1; channel attention sums
            # the skip into the decoder features instead of concatenating them.
            assert cost < plain, name
        elif name != "plain":
            assert cost > plain, name
    # n refinement passes keep n + 1 U-Net passes: segmentation alone scales exactly.
    seg = [
        estimate_memory_gb(*args, network=NetworkOptions(refinement_passes=n)) for n in (0, 1, 2)
    ]
    assert seg[1] == pytest.approx(2 * seg[0]) and seg[2] == pytest.approx(3 * seg[0])


@pytest.mark.parametrize("budget", [0.4, 8.0])
def test_refinement_shrinks_patch_or_batch_at_the_same_budget(budget: float) -> None:
    fp = make_fingerprint([(1.0, 1.0, 1.0)] * 10, [(300, 300, 300)] * 10)
    plain = plan_experiment(fp, memory_budget_gb=budget, device_profile="gpu")
    refined = plan_experiment(
        fp,
        memory_budget_gb=budget,
        device_profile="gpu",
        network=NetworkOptions(refinement_passes=2),
    )
    assert refined.network.refinement_passes == 2
    size = [math.prod(p.patch_size) * p.batch_size for p in (plain, refined)]
    assert size[1] < size[0]
    assert refined.estimated_memory_gb <= budget
    assert all(r <= p for r, p in zip(refined.patch_size, plain.patch_size, strict=True))


def _fake_cuda(monkeypatch: pytest.MonkeyPatch, total_gb: float | None) -> list[int]:
    """torch.cuda as seen by the planner: a device of ``total_gb`` or none; returns the
    list of device indices queried."""
    queried: list[int] = []

    def props(index: int) -> SimpleNamespace:
        queried.append(index)
        return SimpleNamespace(name="Fake GPU", total_memory=int(total_gb * 1024**3))

    monkeypatch.setattr(torch.cuda, "is_available", lambda: total_gb is not None)
    monkeypatch.setattr(torch.cuda, "get_device_properties", props)
    return queried


def test_budget_from_the_detected_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    queried = _fake_cuda(monkeypatch, 24.0)
    budget, profile = detect_memory_budget(None)
    # 1.5 GB reserve, then 10% of the rest: (24 - 1.5) x 0.9.
    assert budget == pytest.approx(20.25) == usable_budget_gb(24.0)
    assert profile == "gpu (Fake GPU, 24.0 GB, budget 20.2 GB)"
    assert queried == [0]


def test_headroom_matches_nnunets_default_device() -> None:
    # The estimate is calibrated to nnU-Net's 8 GB target, which nnU-Net runs on >= 10 GB.
    assert usable_budget_gb(10.4) == pytest.approx(8.0, abs=0.02)
    budgets = [usable_budget_gb(g) for g in (2.0, 8.0, 141.0)]
    assert budgets == sorted(budgets) and all(b > 0 for b in budgets)


def test_a_device_no_larger_than_the_reserve_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_cuda(monkeypatch, CUDA_RESERVE_GB)
    with pytest.raises(ValueError, match="--gpu-memory-gb"):
        detect_memory_budget(None)


def test_budget_given_overrides_the_detected_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    queried = _fake_cuda(monkeypatch, 24.0)
    assert detect_memory_budget(6.0) == (6.0, "gpu (6 GB, given)")
    assert queried == []


def test_cpu_profile_without_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_cuda(monkeypatch, None)
    assert detect_memory_budget(None) == (CPU_PROFILE_BUDGET_GB, "cpu")
    assert planner.CPU_PROFILE_BUDGET_GB == 0.4


def test_pipeline_plans_for_the_detected_gpu_unless_told(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    raw = make_raw_dataset(tmp_path / "raw", num_cases=3)
    _fake_cuda(monkeypatch, 16.0)
    detected = plan_and_preprocess(raw, tmp_path / "a", preprocess=False)
    assert detected.memory_budget_gb == pytest.approx(usable_budget_gb(16.0))
    assert detected.device_profile.startswith("gpu (Fake GPU")
    assert detected.topology.features_per_stage[0] == 32  # GPU widths, not the CPU profile's
    given = plan_and_preprocess(raw, tmp_path / "b", preprocess=False, gpu_memory_gb=2.0)
    assert given.memory_budget_gb == 2.0 and given.device_profile == "gpu (2 GB, given)"
    _fake_cuda(monkeypatch, None)
    cpu = plan_and_preprocess(raw, tmp_path / "c", preprocess=False)
    assert cpu.device_profile == "cpu" and cpu.memory_budget_gb == CPU_PROFILE_BUDGET_GB
    assert cpu.topology.features_per_stage[0] == 16


DEVICE_SIZES_GB = (8.0, 24.0, 40.0, 80.0, 141.0)


def test_plans_grow_with_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """One chest-CT fingerprint planned for each detected device size (docs/planning.md,
    "Plans by device size", shows the same rows)."""
    fp = chest_ct_fingerprint()
    plans = []
    for size in DEVICE_SIZES_GB:
        _fake_cuda(monkeypatch, size)
        budget, profile = detect_memory_budget(None)
        plans.append(plan_experiment(fp, memory_budget_gb=budget, device_profile=profile))
    table = "\n".join(
        f"{size:g} GB: budget {p.memory_budget_gb:.1f}, patch {p.patch_size} batch "
        f"{p.batch_size}, estimate {p.estimated_memory_gb:.1f}, 2d batch {p.two_d.batch_size}"
        for size, p in zip(DEVICE_SIZES_GB, plans, strict=True)
        if p.two_d is not None
    )
    budgets = [p.memory_budget_gb for p in plans]
    assert all(a < b for a, b in itertools.pairwise(budgets)), table
    voxels = [math.prod(p.patch_size) * p.batch_size for p in plans]
    assert voxels == sorted(voxels), table
    dataset_voxels = sum(math.prod(c.shape_after_crop) for c in fp.cases)
    for p in plans:
        assert p.two_d is not None
        configurations = [p, p.two_d] + ([p.lowres] if p.lowres is not None else [])
        for c in configurations:
            assert 0 < c.estimated_memory_gb <= p.memory_budget_gb, table
            assert all(a <= m for a, m in zip(c.patch_size, c.median_shape, strict=True)), table
        for c in (p, p.two_d):  # at the dataset's own spacing (lowres has fewer voxels)
            # Batch: >= 2, and above 2 only while one batch covers <= 5% of the dataset.
            assert c.batch_size == 2 or c.batch_size * math.prod(c.patch_size) <= (
                0.05 * dataset_voxels
            ), table
    # The largest device still gets a full-resolution patch no larger than nnU-Net's
    # 256^3-voxel start.
    assert plans[-1].lowres is None and math.prod(plans[-1].patch_size) <= 256**3, table
