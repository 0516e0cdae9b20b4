"""Hand-built fingerprints and tiny plans for planner, network and loss tests."""

from __future__ import annotations

from collections.abc import Sequence

from autojoint.fingerprint.schema import CaseFingerprint, Fingerprint, IntensityStats
from autojoint.planning.planner import plan_experiment
from autojoint.planning.schema import Plan

STATS = IntensityStats(
    mean=-500.0,
    std=300.0,
    median=-600.0,
    min=-1024.0,
    max=900.0,
    percentile_00_5=-1000.0,
    percentile_99_5=200.0,
)


def make_fingerprint(
    spacings: Sequence[Sequence[float]],
    shapes: Sequence[Sequence[int]],
    *,
    classes: Sequence[str] = ("COVID-19", "CAP", "normal"),
    counts: dict[str, int] | None = None,
    channel_names: dict[str, str] | None = None,
    labels: dict[str, int] | None = None,
) -> Fingerprint:
    """One case per (spacing, shape); diagnoses dealt round-robin over ``classes``."""
    cases = tuple(
        CaseFingerprint(
            case_id=f"case_{i:03d}",
            shape=tuple(sh),
            shape_after_crop=tuple(sh),
            spacing=tuple(float(v) for v in sp),
            direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0),
            has_label=True,
            diagnosis=classes[i % len(classes)] if classes else None,
            label_voxel_fraction={"lesion": 0.01},
        )
        for i, (sp, sh) in enumerate(zip(spacings, shapes, strict=True))
    )
    if counts is None:
        counts = {c: sum(1 for x in cases if x.diagnosis == c) for c in classes}
    channel_names = channel_names or {"0": "CT"}
    return Fingerprint(
        channel_names=channel_names,
        labels=labels or {"background": 0, "lesion": 1},
        classes=tuple(classes),
        cases=cases,
        intensity=(STATS,) * len(channel_names),
        diagnosis_counts=counts,
        num_cases_without_label=0,
        num_cases_without_diagnosis=0,
    )


def tiny_plan(
    *, classes: Sequence[str] = ("COVID-19", "CAP", "normal"), shape=(16, 32, 32)
) -> Plan:
    """A real planner output small enough for CPU forward/backward passes in tests:
    patch = view = ``shape``, 4 stages of 4..16 features, 3 segmentation labels."""
    fp = make_fingerprint(
        [(1.0, 1.0, 1.0)] * 6,
        [shape] * 6,
        classes=classes,
        labels={"background": 0, "ground_glass": 1, "consolidation": 2},
    )
    return plan_experiment(
        fp, memory_budget_gb=0.05, device_profile="cpu", base_features=4, max_features=16
    )
