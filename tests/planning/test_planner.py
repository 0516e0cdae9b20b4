"""Planner heuristics on hand-built fingerprints: spacing, topology, patch/batch vs memory."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from autojoint.fingerprint.schema import Fingerprint
from autojoint.networks.joint_net import JointNet
from autojoint.planning.planner import (
    CPU_PROFILE_BUDGET_GB,
    detect_memory_budget,
    plan_experiment,
    target_spacing,
    view_spacing,
)
from autojoint.planning.resolution import (
    MIN_BOTTLENECK_VOXELS,
    MIN_CLASSIFICATION_AXIS,
    _classification_shape,
    estimate_memory_gb,
    plan_topology,
)
from autojoint.planning.schema import PLAN_SCHEMA_VERSION, Plan
from tests.fingerprints import make_fingerprint

BUDGETS = (0.6, 2.0, 8.0, 24.0)


def isotropic() -> Fingerprint:
    return make_fingerprint([(1.0, 1.0, 1.0)] * 5, [(300, 300, 300)] * 5)


def anisotropic() -> Fingerprint:
    return make_fingerprint([(3.0, 0.8, 0.8)] * 5, [(100, 400, 400)] * 5)


@contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Fail instead of hanging the test run if the planner loops forever."""

    def handler(signum, frame):
        raise TimeoutError(f"planning took more than {seconds} s (endless loop?)")

    old = signal.signal(signal.SIGALRM, handler)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# --- target spacing ---------------------------------------------------------------------------


def test_target_spacing_is_the_median() -> None:
    fp = make_fingerprint(
        [(1.0, 0.7, 0.7), (1.5, 0.8, 0.9), (1.2, 0.75, 0.6)], [(200, 300, 300)] * 3
    )
    assert target_spacing(fp) == pytest.approx((1.2, 0.75, 0.7))
    assert target_spacing(isotropic()) == (1.0, 1.0, 1.0)
    assert target_spacing(anisotropic()) == pytest.approx((3.0, 0.8, 0.8))


def _slab_fingerprint(extent_z_mm: float) -> Fingerprint:
    z = [1.0, 2.5, 4.0, 5.0, 5.0]
    return make_fingerprint(
        [(s, 0.8, 0.8) for s in z], [(round(extent_z_mm / s), 512, 512) for s in z]
    )


def test_anisotropy_rule_uses_10th_percentile() -> None:
    # Median z spacing 4 mm > 3 x 0.8 mm, and the z extent (75 voxels) is short: the rule applies.
    expected_z = float(np.percentile([1.0, 2.5, 4.0, 5.0, 5.0], 10))
    assert expected_z == pytest.approx(1.6)
    assert target_spacing(_slab_fingerprint(300.0)) == pytest.approx((expected_z, 0.8, 0.8))


def test_anisotropy_rule_not_applied_when_axis_is_long() -> None:
    # Same spacings, but 800 mm along z (200 voxels at 4 mm; x3 >= 512): keep the median.
    assert target_spacing(_slab_fingerprint(800.0)) == pytest.approx((4.0, 0.8, 0.8))


def test_anisotropy_rule_not_applied_when_ratio_small() -> None:
    fp = make_fingerprint([(1.0, 0.8, 0.8), (2.0, 0.8, 0.8), (2.2, 0.8, 0.8)], [(60, 512, 512)] * 3)
    assert target_spacing(fp) == pytest.approx((2.0, 0.8, 0.8))


def test_anisotropy_rule_keeps_the_coarse_axis_coarsest() -> None:
    # 10th percentile below the in-plane spacing: clamp just above the finest axes.
    z = [0.5, 0.5, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0]
    assert np.percentile(z, 10) == 0.5
    fp = make_fingerprint([(s, 0.8, 0.8) for s in z], [(int(200 / s), 512, 512) for s in z])
    spacing = target_spacing(fp)
    assert spacing[0] == pytest.approx(0.8 * 1.0001)
    assert spacing[0] > spacing[1]


# --- plan invariants --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plans() -> dict[tuple[str, float], Plan]:
    out = {}
    for name, fp in [("iso", isotropic()), ("aniso", anisotropic())]:
        for b in BUDGETS:
            out[(name, b)] = plan_experiment(fp, memory_budget_gb=b, device_profile="test")
    return out


@pytest.mark.parametrize("name", ["iso", "aniso"])
@pytest.mark.parametrize("budget", BUDGETS)
def test_plan_invariants(plans: dict, name: str, budget: float) -> None:
    plan: Plan = plans[(name, budget)]
    topo = plan.topology
    stride = topo.total_stride
    assert plan.target_spacing == pytest.approx(
        (1.0, 1.0, 1.0) if name == "iso" else (3.0, 0.8, 0.8)
    )
    assert plan.median_shape == ((300, 300, 300) if name == "iso" else (100, 400, 400))
    # Patch divisible by the total stride, and each pooled axis keeps >= 4 bottleneck voxels.
    for p, s in zip(plan.patch_size, stride, strict=True):
        assert p % s == 0
        if s > 1:
            assert p // s >= MIN_BOTTLENECK_VOXELS
    assert all(p <= m for p, m in zip(plan.patch_size, plan.median_shape, strict=True))
    # The whole-scan view goes through the same U-Net.
    assert all(c % s == 0 for c, s in zip(plan.classification_shape, stride, strict=True))
    assert math.prod(plan.classification_shape) <= math.prod(plan.patch_size)
    assert plan.batch_size >= 2
    assert plan.estimated_memory_gb <= budget
    assert plan.estimated_memory_gb == pytest.approx(
        estimate_memory_gb(
            plan.patch_size, topo, plan.batch_size, classification_shape=plan.classification_shape
        )
    )
    # Topology shape conventions.
    assert topo.strides[0] == (1, 1, 1)
    assert len(topo.kernel_sizes) == len(topo.strides) == topo.num_stages
    assert topo.features_per_stage[0] == 32
    assert all(f <= 320 for f in topo.features_per_stage)
    assert list(topo.features_per_stage) == sorted(topo.features_per_stage)
    # Deep-supervision weights: finest first, never growing with coarseness, summing to one.
    assert len(plan.eta) == topo.num_stages
    assert sum(plan.eta) == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(plan.eta, plan.eta[1:], strict=False))
    assert plan.memory_budget_gb == budget and plan.device_profile == "test"


def test_kernel_is_1_on_too_coarse_axis(plans: dict) -> None:
    aniso = plans[("aniso", 2.0)].topology
    assert aniso.kernel_sizes[0] == (1, 3, 3)  # 3 mm > 2 x 0.8 mm: no mixing along z yet
    assert aniso.strides[1] == (1, 2, 2)  # and no pooling along z at the first step
    iso = plans[("iso", 2.0)].topology
    assert all(k == (3, 3, 3) for k in iso.kernel_sizes)
    assert all(s in ((1, 1, 1), (2, 2, 2)) for s in iso.strides[:4])


def test_plan_topology_known_answer() -> None:
    topo = plan_topology((16, 64, 64), (3.0, 0.8, 0.8), base_features=8, max_features=32)
    # Spacing (3, .8, .8) -> (3, 1.6, 1.6) -> (6, 3.2, 3.2) -> (12, 6.4, 6.4) -> (12, 12.8, 12.8);
    # sizes (16, 64, 64) -> (16, 32, 32) -> (8, 16, 16) -> (4, 8, 8) -> (4, 4, 4).
    assert topo.strides == ((1, 1, 1), (1, 2, 2), (2, 2, 2), (2, 2, 2), (1, 2, 2))
    assert topo.kernel_sizes == ((1, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3))
    assert topo.features_per_stage == (8, 16, 32, 32, 32)
    assert topo.total_stride == (4, 16, 16)


def test_plan_topology_stops_at_max_stages() -> None:
    topo = plan_topology((1024, 1024, 1024), (1.0, 1.0, 1.0), base_features=32, max_features=320)
    assert topo.num_stages == 6
    assert topo.total_stride == (32, 32, 32)
    assert topo.features_per_stage == (32, 64, 128, 256, 320, 320)


@pytest.mark.parametrize("name", ["iso", "aniso"])
def test_patch_and_batch_grow_with_budget(plans: dict, name: str) -> None:
    voxels = [math.prod(plans[(name, b)].patch_size) for b in BUDGETS]
    per_step = [v * plans[(name, b)].batch_size for v, b in zip(voxels, BUDGETS, strict=True)]
    assert voxels == sorted(voxels)
    assert all(a < b for a, b in itertools.pairwise(per_step))
    assert per_step[-1] > 10 * per_step[0]
    mem = [plans[(name, b)].estimated_memory_gb for b in BUDGETS]
    assert mem == sorted(mem)


def test_batch_capped_by_dataset_size() -> None:
    # A tiny dataset of tiny cases: a huge budget must not give a batch larger than 5% of it.
    fp = make_fingerprint([(1.0, 1.0, 1.0)] * 5, [(32, 32, 32)] * 5)
    plan = plan_experiment(fp, memory_budget_gb=24.0, device_profile="test")
    assert plan.patch_size == (32, 32, 32)
    assert plan.batch_size == 2
    assert plan.estimated_memory_gb < 24.0


def test_thin_slab_dataset_plans_without_hanging() -> None:
    # Few thick slices: the z axis hits the 8-voxel floor while the budget is still exceeded.
    fp = make_fingerprint([(5.0, 0.63, 0.79)], [(11, 354, 215)], classes=())
    with time_limit(20):
        plan = plan_experiment(fp, memory_budget_gb=0.3, device_profile="test")
    assert plan.patch_size[0] == 8
    assert plan.estimated_memory_gb <= 0.3
    assert all(p % s == 0 for p, s in zip(plan.patch_size, plan.topology.total_stride, strict=True))


def test_planning_is_deterministic() -> None:
    a = plan_experiment(anisotropic(), memory_budget_gb=2.0, device_profile="cpu")
    b = plan_experiment(anisotropic(), memory_budget_gb=2.0, device_profile="cpu")
    assert a == b
    assert json.dumps(a.__dict__, default=str) == json.dumps(b.__dict__, default=str)


def test_plan_without_classes() -> None:
    fp = make_fingerprint([(1.0, 1.0, 1.0)] * 4, [(64, 64, 64)] * 4, classes=())
    plan = plan_experiment(fp, memory_budget_gb=2.0, device_profile="cpu")
    assert not plan.has_diagnosis
    assert plan.classification_shape is None  # no view; plans before 0.1.0 wrote (0, 0, 0)
    assert plan.lowres is None or plan.lowres.classification_shape is None
    assert plan.two_d is not None and plan.two_d.classification_shape is None
    assert plan.class_weights == ()
    assert plan.loss_weights.cls == 0.0
    assert plan.num_labels == 2


def test_normalization_scheme_follows_modality() -> None:
    ct = plan_experiment(isotropic(), memory_budget_gb=2.0, device_profile="cpu")
    n = ct.normalization[0]
    assert (n.scheme, n.clip_low, n.clip_high, n.mean, n.std) == (
        "ct",
        -1000.0,
        200.0,
        -500.0,
        300.0,
    )
    mr = make_fingerprint(
        [(1.0, 1.0, 1.0)] * 3, [(64, 64, 64)] * 3, channel_names={"0": "T1", "1": "T2"}
    )
    plan = plan_experiment(mr, memory_budget_gb=2.0, device_profile="cpu")
    assert [x.scheme for x in plan.normalization] == ["zscore", "zscore"]


def test_class_weights_inverse_frequency_known_answer(caplog: pytest.LogCaptureFixture) -> None:
    fp = make_fingerprint(
        [(1.0, 1.0, 1.0)] * 3,
        [(64, 64, 64)] * 3,
        classes=("a", "b", "c", "d"),
        counts={"a": 6, "b": 3, "c": 1},
    )
    plan = plan_experiment(fp, memory_budget_gb=2.0, device_profile="cpu")
    # Diagnosis loss weights N / (K * n_c), with N = 10 and K = 4 classes; an absent class
    # gets 0.
    assert plan.class_weights == pytest.approx((10 / 24, 10 / 12, 10 / 4, 0.0))
    assert "diagnosis 'd' has no training case" in caplog.text


def test_class_weights_balanced_are_one() -> None:
    fp = make_fingerprint([(1.0, 1.0, 1.0)] * 6, [(64, 64, 64)] * 6)
    plan = plan_experiment(fp, memory_budget_gb=2.0, device_profile="cpu")
    assert plan.class_weights == pytest.approx((1.0, 1.0, 1.0))


def test_plan_experiment_errors() -> None:
    empty = make_fingerprint([], [])
    with pytest.raises(ValueError, match="no cases"):
        plan_experiment(empty, memory_budget_gb=1.0, device_profile="cpu")
    with pytest.raises(ValueError, match="must be positive"):
        plan_experiment(isotropic(), memory_budget_gb=0.0, device_profile="cpu")


def test_estimate_memory_is_linear_in_batch(plans: dict) -> None:
    plan: Plan = plans[("iso", 2.0)]
    one = estimate_memory_gb(plan.patch_size, plan.topology, 1)
    assert estimate_memory_gb(plan.patch_size, plan.topology, 3) == pytest.approx(3 * one)
    with_view = estimate_memory_gb(
        plan.patch_size, plan.topology, 1, classification_shape=plan.classification_shape
    )
    assert with_view > one


def test_detect_memory_budget() -> None:
    assert detect_memory_budget(10.0) == (pytest.approx(10.0), "gpu (10 GB, given)")
    if not torch.cuda.is_available():
        assert detect_memory_budget(None) == (CPU_PROFILE_BUDGET_GB, "cpu")


# --- plan file --------------------------------------------------------------------------------


def test_plan_save_load_round_trip(tmp_path: Path, plans: dict) -> None:
    for key in [("iso", 0.6), ("aniso", 8.0)]:
        plan: Plan = plans[key]
        path = tmp_path / f"{key[0]}.json"
        plan.save(path)
        loaded = Plan.load(path)
        assert loaded == plan
        assert isinstance(loaded.patch_size, tuple) and isinstance(
            loaded.topology.strides[0], tuple
        )


def test_plan_wrong_schema_version_refused(tmp_path: Path, plans: dict) -> None:
    path = tmp_path / "plans.json"
    plans[("iso", 2.0)].save(path)
    d = json.loads(path.read_text(encoding="utf-8"))
    d["schema_version"] = PLAN_SCHEMA_VERSION + 98
    path.write_text(json.dumps(d), encoding="utf-8")
    with pytest.raises(
        ValueError,
        match=rf"plans.json: plan schema_version {PLAN_SCHEMA_VERSION + 98} "
        r"is not supported .*rerun autojoint_plan",
    ):
        Plan.load(path)
    del d["schema_version"]
    with pytest.raises(ValueError, match="schema_version None is not supported"):
        Plan.from_dict(d)


def test_fingerprint_save_load_round_trip(tmp_path: Path) -> None:
    fp = anisotropic()
    fp.save(tmp_path / "fingerprint.json")
    assert Fingerprint.load(tmp_path / "fingerprint.json") == fp
    d = json.loads((tmp_path / "fingerprint.json").read_text(encoding="utf-8"))
    d["schema_version"] = 0
    (tmp_path / "fingerprint.json").write_text(json.dumps(d), encoding="utf-8")
    with pytest.raises(ValueError, match="fingerprint schema_version 0 is not supported"):
        Fingerprint.load(tmp_path / "fingerprint.json")


# --- nnU-Net v2 reference plans ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("spacing", "median", "nnunet_patch"),
    [
        ((1.0, 1.0, 1.0), (300, 300, 300), (128, 128, 128)),
        ((3.0, 0.8, 0.8), (100, 400, 400), (56, 192, 192)),
    ],
)
def test_matches_nnunet_reference_within_one_stride_step(
    spacing: tuple[float, float, float], median: tuple[int, int, int], nnunet_patch: tuple
) -> None:
    """nnU-Net v2.8.1's plain U-Net at 8 GB plans these patches with batch 2; for the same
    budget and widths (32..320) ours must be within one stride-step per axis."""
    fp = make_fingerprint([spacing] * 10, [median] * 10, classes=())
    plan = plan_experiment(fp, memory_budget_gb=8.0, device_profile="gpu")
    stride = plan.topology.total_stride
    assert plan.batch_size == 2
    for ours, ref, st in zip(plan.patch_size, nnunet_patch, stride, strict=True):
        assert abs(ours - ref) <= st, (plan.patch_size, nnunet_patch, stride)


def test_eta_is_share_of_lesions_each_scale_resolves() -> None:
    """Lesions of 4000 and 500 mm^3 (diameters 19.7 and 9.8 mm) at 1 mm isotropic: scales
    with voxel edges 1, 2, 4 mm resolve both, 8 mm only the larger, 16 and 32 mm neither."""
    fp = make_fingerprint(
        [(1.0, 1.0, 1.0)] * 4, [(300, 300, 300)] * 4, lesion_volumes_mm3=(4000.0, 500.0)
    )
    plan = plan_experiment(fp, memory_budget_gb=8.0, device_profile="gpu")
    assert plan.topology.num_stages >= 5
    assert all(s == (2, 2, 2) for s in plan.topology.strides[1:])
    shares = np.array([1, 1, 1, 0.5, 0, 0])[: plan.topology.num_stages]
    np.testing.assert_allclose(plan.eta, shares / 3.5)
    assert "lesion components" in plan.reasons["eta"]


def test_view_eta_is_fitted_to_the_coarser_view_voxels() -> None:
    """Issue 16, defect 5: eta was fitted to the patch's voxel size and reused on the whole-
    scan view, whose voxels are coarser. Same lesions as above; the view shrinks the 300^3
    scan to ``classification_shape``, so each scale's voxel edge grows by 300 / view size
    and a coarse scale that resolves the 9.8 mm lesion on the patch no longer does on the
    view."""
    fp = make_fingerprint(
        [(1.0, 1.0, 1.0)] * 4, [(300, 300, 300)] * 4, lesion_volumes_mm3=(4000.0, 500.0)
    )
    plan = plan_experiment(fp, memory_budget_gb=8.0, device_profile="gpu")
    factor = 300 / np.array(plan.classification_shape, dtype=float)
    np.testing.assert_allclose(
        view_spacing(plan.median_shape, plan.target_spacing, plan.classification_shape), factor
    )
    edges, stride = [], np.ones(3)
    for st in plan.topology.strides:
        stride = stride * np.array(st)
        edges.append(float(np.max(factor * stride)))
    diameters = (6 * np.array([4000.0, 500.0]) / np.pi) ** (1 / 3)
    shares = np.array([np.mean(diameters >= 2 * e) for e in edges])
    np.testing.assert_allclose(plan.view_eta, shares / shares.sum())
    assert plan.view_eta != plan.eta
    assert plan.classification_eta == plan.view_eta
    # Mass moves to the finer scales: the view's mean scale index is lower.
    idx = np.arange(plan.topology.num_stages)
    assert float(idx @ np.array(plan.view_eta)) < float(idx @ np.array(plan.eta))


def test_eta_without_lesions_halves_per_scale() -> None:
    fp = make_fingerprint([(1.0, 1.0, 1.0)] * 4, [(64, 64, 64)] * 4, lesion_volumes_mm3=())
    plan = plan_experiment(fp, memory_budget_gb=8.0, device_profile="gpu")
    np.testing.assert_allclose(np.array(plan.eta[1:]) / np.array(plan.eta[:-1]), 0.5)


CORRUPTIONS = {
    "missing key": lambda d: d.pop("patch_size"),
    "wrong eta length": lambda d: d.update(eta=[1.0]),
    "patch not divisible": lambda d: d.update(patch_size=[d["patch_size"][0] + 1, 32, 32]),
    "bad normalisation": lambda d: d.update(normalization=[]),
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_malformed_plans_are_refused_with_the_file_named(tmp_path: Path, corruption: str) -> None:
    plan = plan_experiment(isotropic(), memory_budget_gb=2.0, device_profile="test")
    path = tmp_path / "plans.json"
    plan.save(path)
    assert Plan.load(path) == plan
    d = json.loads(path.read_text(encoding="utf-8"))
    CORRUPTIONS[corruption](d)
    path.write_text(json.dumps(d), encoding="utf-8")
    with pytest.raises(ValueError, match="plans.json: (malformed|invalid) plan"):
        Plan.load(path)


@pytest.mark.parametrize(
    ("fraction", "focal_alpha", "tversky_alpha"),
    [
        (0.0001, 0.9, 0.7),
        (0.01, 0.9, 0.7),
        (0.04, 0.8, 0.7),
        (0.15, 1 - math.sqrt(0.15), 0.6),
        (0.25, 0.5, 0.5),
        (0.5, 0.5, 0.5),
    ],
)
def test_loss_parameters_follow_lesion_fraction(
    fraction: float, focal_alpha: float, tversky_alpha: float
) -> None:
    fp = isotropic()
    stats = fp.lesion_stats["lesion"]
    fp = dataclasses.replace(
        fp, lesion_stats={"lesion": dataclasses.replace(stats, mean_voxel_fraction=fraction)}
    )
    plan = plan_experiment(fp, memory_budget_gb=2.0, device_profile="test")
    assert plan.loss.focal_alpha == pytest.approx(focal_alpha)
    assert plan.loss.tversky_alpha == pytest.approx(tversky_alpha)
    assert plan.loss.tversky_alpha + plan.loss.tversky_beta == pytest.approx(1.0)
    assert plan.loss.segmentation == "dice_ce"
    assert "lesion voxel fraction" in plan.reasons["loss"]


def test_lowres_planned_only_for_large_scans() -> None:
    huge = make_fingerprint([(0.7, 0.7, 0.7)] * 5, [(500, 500, 500)] * 5)
    plan = plan_experiment(huge, memory_budget_gb=8.0, device_profile="gpu")
    assert math.prod(plan.patch_size) < 0.25 * math.prod(plan.median_shape)
    assert plan.lowres is not None
    low = plan.for_configuration("lowres")
    assert low.configuration == "lowres" and low.lowres is None
    assert all(lo > fu for lo, fu in zip(low.target_spacing, plan.target_spacing, strict=True))
    assert math.prod(low.patch_size) >= 0.25 * math.prod(low.median_shape)
    assert low.validate() == []
    assert low.normalization == plan.normalization and low.classes == plan.classes
    assert plan.for_configuration("fullres") is plan
    assert "covers only" in plan.reasons["lowres"]

    small = plan_experiment(isotropic(), memory_budget_gb=24.0, device_profile="gpu")
    if math.prod(small.patch_size) >= 0.25 * math.prod(small.median_shape):
        assert small.lowres is None
        with pytest.raises(ValueError, match="no 'lowres' configuration"):
            small.for_configuration("lowres")
    with pytest.raises(ValueError, match="unknown configuration"):
        plan.for_configuration("3d_cascade")


def test_lowres_survives_save_and_load(tmp_path: Path) -> None:
    huge = make_fingerprint([(2.5, 0.7, 0.7)] * 5, [(300, 512, 512)] * 5)
    plan = plan_experiment(huge, memory_budget_gb=0.4, device_profile="cpu")
    assert plan.lowres is not None
    plan.save(tmp_path / "plans.json")
    assert Plan.load(tmp_path / "plans.json") == plan


def test_tiny_budget_keeps_a_trainable_classification_view() -> None:
    # Measured before the floor: 128^3 scans at 1 GB/1000 gave an 8x8x8 view, which the
    # classifier's three stride-2 units reduce to one voxel: instance norm refuses it.
    fp = make_fingerprint(
        [(1.0, 1.0, 1.0)] * 6,
        [(128, 128, 128)] * 6,
        classes=("a", "b"),
        labels={"background": 0, "lesion": 1},
    )
    plan = plan_experiment(
        fp, memory_budget_gb=0.001, device_profile="cpu", base_features=4, max_features=16
    )
    assert min(plan.classification_shape) >= MIN_CLASSIFICATION_AXIS
    assert all(
        c % s == 0
        for c, s in zip(plan.classification_shape, plan.topology.total_stride, strict=True)
    )
    net = JointNet(plan).train()
    _, logits, feats = net.classify(torch.randn(2, 1, *plan.classification_shape))
    assert logits.shape == (2, 2) and math.prod(feats[-1].shape[2:]) > 1


def test_classification_view_floor_never_exceeds_a_small_scan() -> None:
    # A scan smaller than the floor is seen whole (rounded to the stride), never padded up.
    shape = _classification_shape(np.array([12.0, 40.0, 40.0]), (8, 8, 8), (4, 8, 8))
    assert shape == (12, 16, 16)
    assert _classification_shape(np.array([1.0, 40.0, 40.0]), (1, 8, 8), (1, 8, 8))[0] == 1
