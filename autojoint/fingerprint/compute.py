"""Compute the dataset fingerprint: spacings, shapes, intensities, label and class balance,
and the number and size of lesions (connected components of each label)."""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from tqdm import tqdm

from autojoint.arrays.cropping import bbox_of, body_mask, crop
from autojoint.fingerprint.schema import (
    ALL_LESIONS,
    PERCENTILES,
    CaseFingerprint,
    Fingerprint,
    IntensityStats,
    LesionStats,
)
from autojoint.io.case_loading import load_channels, load_label
from autojoint.io.dataset import DatasetError, RawCase, RawDataset, is_ct
from autojoint.io.image_io import SLICE_SPACING_2D_MM

logger = logging.getLogger(__name__)

SAMPLES_PER_CASE = 10_000

# 26-connectivity: voxels touching by a face, an edge or a corner are one lesion.
CONNECTIVITY_26 = np.ones((3, 3, 3), dtype=bool)
# 4-connectivity within each axial slice, none across slices: hole filling slice by slice.
_IN_PLANE = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE[1] = ndimage.generate_binary_structure(2, 1)


@dataclass(frozen=True)
class _CaseResult:
    fingerprint: CaseFingerprint
    samples: np.ndarray  # (C, N) float32


def component_volumes(mask: np.ndarray, spacing: Sequence[float]) -> list[float]:
    """Volumes in mm³ of the 26-connected components of ``mask``, largest first.

    Shape:
        mask: ``(Z, Y, X)`` bool; ``spacing`` in mm ``(z, y, x)``.
    """
    if not mask.any():
        return []
    components, n = ndimage.label(mask, structure=CONNECTIVITY_26)
    voxels = np.bincount(components.ravel(), minlength=n + 1)[1:]
    voxel_mm3 = float(np.prod(np.asarray(spacing, dtype=np.float64)))
    return [float(v) * voxel_mm3 for v in np.sort(voxels)[::-1]]


def equivalent_diameter(volume_mm3: np.ndarray, *, is_2d: bool = False) -> np.ndarray:
    """Diameter (mm) of the sphere of the given volume, ``(6 V / pi) ** (1/3)``; for 2D
    data of the disc of the component's area ``A = V / slice thickness``,
    ``(4 A / pi) ** (1/2)``."""
    v = np.asarray(volume_mm3, dtype=np.float64)
    if is_2d:
        return np.sqrt(4.0 * (v / SLICE_SPACING_2D_MM) / math.pi)
    return np.cbrt(6.0 * v / math.pi)


def _lesion_components(
    seg_c: np.ndarray, labels: dict[str, int], spacing: Sequence[float]
) -> dict[str, list[float]]:
    """Component volumes per lesion label and for all lesions together (``"lesion"``).

    One labelling call per label, on the mask cropped to the lesions' bounding box.
    """
    foreground = seg_c > 0
    if not foreground.any():
        return {name: [] for name in lesion_names(labels)}
    sub = crop(seg_c, bbox_of(foreground))
    out = {name: component_volumes(sub == v, spacing) for name, v in labels.items() if v > 0}
    out[ALL_LESIONS] = component_volumes(sub > 0, spacing)
    return out


def _sampling_body(body: np.ndarray, *, ct: bool) -> np.ndarray:
    """Voxels to sample intensities from. In CT the body mask (above -500 HU) leaves out the
    lungs (about -850 HU); filling holes slice by slice adds them back."""
    return ndimage.binary_fill_holes(body, structure=_IN_PLANE) if ct else body


def _analyse_case(
    case: RawCase, labels: dict[str, int], channel_names: dict[str, str], seed: int
) -> _CaseResult:
    data, geo = load_channels(case.image_paths)
    seg = load_label(case.label_path, geo, len(labels)) if case.label_path else None
    ct = is_ct(channel_names)
    bbox = bbox_of(body_mask(data, is_ct=ct))
    data_c = crop(data, bbox)
    seg_c = crop(seg, bbox) if seg is not None else None
    body = _sampling_body(body_mask(data_c, is_ct=ct), ct=ct)
    # Sample lesion voxels AND body voxels (lungs included): lesions alone (-750..140 HU)
    # would make the clipping window cut the surrounding lung (-850 HU) the network must
    # also see.
    rng = np.random.default_rng(seed)
    pools = [np.flatnonzero(body)]
    if seg_c is not None:
        pools.append(np.flatnonzero(seg_c > 0))
    picks = []
    for pool in pools:
        if pool.size:
            n = min(SAMPLES_PER_CASE // len(pools), pool.size)
            picks.append(rng.choice(pool, size=n, replace=False))
    idx = np.concatenate(picks) if picks else np.zeros(0, dtype=np.int64)
    samples = data_c.reshape(data_c.shape[0], -1)[:, idx].astype(np.float32)
    fractions = {
        name: float(np.mean(seg == value)) if seg is not None else float("nan")
        for name, value in labels.items()
        if value > 0
    }
    fp = CaseFingerprint(
        case_id=case.case_id,
        shape=geo.shape,
        shape_after_crop=tuple(b - a for a, b in bbox),  # type: ignore[arg-type]
        spacing=geo.spacing,
        direction=geo.direction,
        has_label=seg is not None,
        diagnosis=case.diagnosis,
        label_voxel_fraction=fractions,
        lesion_components=(
            _lesion_components(seg_c, labels, geo.spacing) if seg_c is not None else {}
        ),
        is_2d=geo.is_2d,
    )
    return _CaseResult(fp, samples)


def _stats(values: np.ndarray) -> IntensityStats:
    if values.size == 0:
        raise ValueError("no foreground voxels found in any case; are the images empty?")
    v = values.astype(np.float64)
    return IntensityStats(
        mean=float(v.mean()),
        std=float(v.std()),
        median=float(np.median(v)),
        min=float(v.min()),
        max=float(v.max()),
        percentile_00_5=float(np.percentile(v, 0.5)),
        percentile_99_5=float(np.percentile(v, 99.5)),
    )


def _percentiles(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return dict.fromkeys(PERCENTILES, math.nan)
    return {key: float(np.percentile(values, q)) for key, q in PERCENTILES.items()}


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else math.nan


def _median(values: Sequence[float]) -> float:
    return float(np.median(values)) if len(values) else math.nan


def lesion_names(labels: dict[str, int]) -> list[str]:
    """Keys of the lesion statistics: every non-zero label, then ``"lesion"`` (all of them)."""
    names = [name for name, value in labels.items() if value > 0 and name != ALL_LESIONS]
    return [*names, ALL_LESIONS]


def lesion_stats(
    cases: Sequence[CaseFingerprint], labels: dict[str, int]
) -> dict[str, LesionStats]:
    """Dataset-level lesion statistics from the case fingerprints (see :class:`LesionStats`).

    ``"lesion"`` is the union of all non-zero labels. A label itself named ``"lesion"``
    coincides with it when it is the only lesion label; next to other labels it gets no
    entry of its own (``compute_fingerprint`` warns).
    """
    masked = [c for c in cases if c.has_label]
    is_2d = bool(cases) and all(c.is_2d for c in cases)
    out = {}
    for name in lesion_names(labels):
        if name == ALL_LESIONS:  # labels are disjoint: the union's share is the sum
            fractions = [sum(c.label_voxel_fraction.values()) for c in masked]
        else:
            fractions = [c.label_voxel_fraction[name] for c in masked]
        per_case = [c.lesion_components[name] for c in masked]
        counts = [len(v) for v in per_case]
        volumes = np.asarray([v for vols in per_case for v in vols], dtype=np.float64)
        out[name] = LesionStats(
            num_cases_with_mask=len(masked),
            num_cases_with_label=sum(n > 0 for n in counts),
            mean_voxel_fraction=_mean(fractions),
            components_per_case_mean=_mean(counts),
            components_per_case_median=_median(counts),
            volume_mm3_percentiles=_percentiles(volumes),
            equivalent_diameter_mm_percentiles=_percentiles(
                equivalent_diameter(volumes, is_2d=is_2d)
            ),
        )
    return out


def compute_fingerprint(dataset: RawDataset, *, num_workers: int = 1, seed: int = 0) -> Fingerprint:
    """Fingerprint every case (in parallel when ``num_workers > 1``).

    A failing case re-raises its own error (file name included) in the caller.
    """
    lesion_labels = [name for name, value in dataset.labels.items() if value > 0]
    if ALL_LESIONS in lesion_labels and len(lesion_labels) > 1:
        logger.warning(
            "label '%s' shares its name with the all-lesions entry of the fingerprint's lesion "
            "statistics; there '%s' means the union of %s.",
            ALL_LESIONS,
            ALL_LESIONS,
            lesion_labels,
        )
    args = [
        (c, dataset.labels, dataset.channel_names, seed + i) for i, c in enumerate(dataset.cases)
    ]
    bar = {"total": len(args), "desc": "fingerprint", "unit": "case"}
    if num_workers > 1:
        with ProcessPoolExecutor(num_workers) as pool:
            results = list(tqdm(pool.map(_analyse_case, *zip(*args, strict=True)), **bar))
    else:
        results = [_analyse_case(*a) for a in tqdm(args, **bar)]
    is_2d = check_dimensionality(dataset.cases, [r.fingerprint for r in results])
    samples = np.concatenate([r.samples for r in results], axis=1)
    counts = Counter(c.diagnosis for c in dataset.cases if c.diagnosis is not None)
    cases = tuple(r.fingerprint for r in results)
    return Fingerprint(
        channel_names=dataset.channel_names,
        labels=dataset.labels,
        classes=dataset.classes,
        cases=cases,
        intensity=tuple(_stats(samples[c]) for c in range(samples.shape[0])),
        diagnosis_counts={name: counts.get(name, 0) for name in dataset.classes},
        num_cases_without_label=sum(c.label_path is None for c in dataset.cases),
        num_cases_without_diagnosis=sum(c.diagnosis is None for c in dataset.cases),
        lesion_stats=lesion_stats(cases, dataset.labels),
        is_2d=is_2d,
    )


def check_dimensionality(
    raw_cases: Sequence[RawCase], fingerprints: Sequence[CaseFingerprint]
) -> bool:
    """True if every case is 2D, False if every case is 3D.

    Raises:
        DatasetError: the dataset mixes 2D images and 3D volumes (naming examples of each):
            one plan cannot serve both.
    """
    files = {
        dims: [
            str(r.image_paths[0])
            for r, f in zip(raw_cases, fingerprints, strict=True)
            if f.is_2d == (dims == 2)
        ]
        for dims in (2, 3)
    }
    if files[2] and files[3]:
        raise DatasetError(
            f"the dataset mixes {len(files[2])} 2D images (e.g. {', '.join(files[2][:3])}) "
            f"with {len(files[3])} 3D volumes (e.g. {', '.join(files[3][:3])}); one plan "
            "serves one dimensionality. Convert the 2D images into one-slice 3D volumes or "
            "split the dataset."
        )
    return bool(files[2])
