"""The planner on the embedded demo dataset (generated, miniature field of view)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from autojoint.fingerprint.compute import compute_fingerprint
from autojoint.io.dataset import load_raw_dataset
from autojoint.planning.planner import CPU_PROFILE_BUDGET_GB, plan_experiment
from dataset_conversion.generate_demo import generate_dataset


def test_demo_dataset_plan(tmp_path: Path) -> None:
    generate_dataset(tmp_path / "raw", num_train=9, seed=3, fov_mm=80.0, z_extent_mm=60.0)
    fp = compute_fingerprint(load_raw_dataset(tmp_path / "raw"))
    plan = plan_experiment(
        fp,
        memory_budget_gb=CPU_PROFILE_BUDGET_GB,
        device_profile="cpu",
        base_features=16,
        max_features=128,
    )
    spacings = np.array([c.spacing for c in fp.cases])
    # Slices (1-5 mm) are the coarse axis and stay first; in-plane 0.6-1.0 mm.
    assert plan.transpose_forward == (0, 1, 2)
    assert 1.0 <= plan.target_spacing[0] <= 5.0
    assert 0.6 <= plan.target_spacing[1] == plan.target_spacing[2] <= 1.0
    np.testing.assert_allclose(plan.target_spacing[1:], np.median(spacings[:, 1:], axis=0))
    # The CT window spans lung (about -850 HU) to soft tissue/bone.
    norm = plan.normalization[0]
    assert norm.scheme == "ct" and norm.clip_low < -800 and norm.clip_high > 40
    # Three balanced classes -> weight 1 each; lesion statistics drive eta.
    np.testing.assert_allclose(plan.class_weights, 1.0)
    assert "lesion components" in plan.reasons["eta"]
    assert plan.eta[0] == max(plan.eta)
    stride = plan.topology.total_stride
    assert all(p % s == 0 for p, s in zip(plan.patch_size, stride, strict=True))
    assert math.prod(plan.classification_shape) <= math.prod(plan.patch_size)
    assert plan.estimated_memory_gb <= CPU_PROFILE_BUDGET_GB
    assert plan.validate() == []
