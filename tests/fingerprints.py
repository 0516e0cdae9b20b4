"""Hand-built fingerprints and tiny plans for planner, network and loss tests."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from autojoint.fingerprint.compute import lesion_names, lesion_stats
from autojoint.fingerprint.schema import (
    ALL_LESIONS,
    CaseFingerprint,
    Fingerprint,
    IntensityStats,
)
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


def _case_lesions(
    labels: dict[str, int], volumes_mm3: Sequence[float], scan_mm3: float
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Every lesion label gets components of ``volumes_mm3``; ``"lesion"`` is their union."""
    names = [n for n, v in labels.items() if v > 0]
    vols = sorted((float(v) for v in volumes_mm3), reverse=True)
    fractions = {n: sum(vols) / scan_mm3 for n in names}
    components = {n: list(vols) for n in lesion_names(labels)}
    components[ALL_LESIONS] = sorted((v for n in names for v in vols), reverse=True)
    return fractions, components


def make_fingerprint(
    spacings: Sequence[Sequence[float]],
    shapes: Sequence[Sequence[int]],
    *,
    classes: Sequence[str] = ("COVID-19", "CAP", "normal"),
    counts: dict[str, int] | None = None,
    channel_names: dict[str, str] | None = None,
    labels: dict[str, int] | None = None,
    lesion_volumes_mm3: Sequence[float] = (4000.0, 500.0),
    is_2d: bool = False,
) -> Fingerprint:
    """One case per (spacing, shape); diagnoses dealt round-robin over ``classes``; every
    case has a mask holding, per lesion label, one component of each ``lesion_volumes_mm3``.
    ``is_2d``: 2D images (shapes ``(1, Y, X)``, spacings ``(1.0, y, x)``; component
    "volumes" are areas x the nominal 1 mm slice)."""
    labels = labels or {"background": 0, "lesion": 1}
    cases = []
    for i, (sp, sh) in enumerate(zip(spacings, shapes, strict=True)):
        spacing = tuple(float(v) for v in sp)
        fractions, components = _case_lesions(
            labels, lesion_volumes_mm3, math.prod(sh) * math.prod(spacing)
        )
        cases.append(
            CaseFingerprint(
                case_id=f"case_{i:03d}",
                shape=tuple(sh),
                shape_after_crop=tuple(sh),
                spacing=spacing,
                direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0),
                has_label=True,
                diagnosis=classes[i % len(classes)] if classes else None,
                label_voxel_fraction=fractions,
                lesion_components=components,
                is_2d=is_2d,
            )
        )
    if counts is None:
        counts = {c: sum(1 for x in cases if x.diagnosis == c) for c in classes}
    channel_names = channel_names or {"0": "CT"}
    return Fingerprint(
        channel_names=channel_names,
        labels=labels,
        classes=tuple(classes),
        cases=tuple(cases),
        intensity=(STATS,) * len(channel_names),
        diagnosis_counts=counts,
        num_cases_without_label=0,
        num_cases_without_diagnosis=0,
        lesion_stats=lesion_stats(cases, labels),
        is_2d=is_2d,
    )


def chest_ct_fingerprint(num_cases: int = 40) -> Fingerprint:
    """Chest CTs as a GPU plan sees them: 1.25 mm slices, 0.75 mm in plane, cropped to
    about 280 x 360 x 480 voxels (shapes vary by up to 10% per axis, deterministically),
    two lesion labels."""
    shapes = [
        (260 + (7 * i) % 40, 340 + (11 * i) % 40, 460 + (13 * i) % 40) for i in range(num_cases)
    ]
    return make_fingerprint(
        [(1.25, 0.75, 0.75)] * num_cases,
        shapes,
        labels={"background": 0, "ground_glass": 1, "consolidation": 2},
        lesion_volumes_mm3=(60000.0, 8000.0, 500.0),
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


def nan_equal(a: object, b: object) -> bool:
    """Deep equality of fingerprints (or parts) where NaN equals NaN and container and
    number types must match (a tuple read back as a list is a difference)."""
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        return type(a) is type(b) and all(
            nan_equal(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a)
        )
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(nan_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return (
            type(a) is type(b)
            and len(a) == len(b)
            and all(nan_equal(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b
