"""Compute the dataset fingerprint: spacings, shapes, intensities, label and class balance."""

from __future__ import annotations

import logging
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from autojoint.fingerprint.schema import CaseFingerprint, Fingerprint, IntensityStats
from autojoint.io.case_loading import load_channels, load_label
from autojoint.io.dataset import RawCase, RawDataset
from autojoint.preprocessing.cropping import bbox_of, body_mask, crop

logger = logging.getLogger(__name__)

SAMPLES_PER_CASE = 10_000


@dataclass(frozen=True)
class _CaseResult:
    fingerprint: CaseFingerprint
    samples: np.ndarray  # (C, N) float32


def is_ct(channel_names: dict[str, str]) -> bool:
    """nnU-Net's convention: a channel named 'CT' holds Hounsfield units."""
    return any(name.strip().upper() == "CT" for name in channel_names.values())


def _analyse_case(
    case: RawCase, labels: dict[str, int], channel_names: dict[str, str], seed: int
) -> _CaseResult:
    data, geo = load_channels(case.image_paths)
    seg = load_label(case.label_path, geo, len(labels)) if case.label_path else None
    bbox = bbox_of(body_mask(data, is_ct=is_ct(channel_names)))
    data_c = crop(data, bbox)
    body = body_mask(data_c, is_ct=is_ct(channel_names))
    # Sample lesion voxels AND body voxels: lesions alone (-750..140 HU) would make the
    # clipping window cut the surrounding lung (-850 HU) the network must also see.
    rng = np.random.default_rng(seed)
    pools = [np.flatnonzero(body)]
    if seg is not None:
        pools.append(np.flatnonzero(crop(seg, bbox) > 0))
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


def compute_fingerprint(dataset: RawDataset, *, num_workers: int = 1, seed: int = 0) -> Fingerprint:
    """Fingerprint every case (in parallel when ``num_workers > 1``).

    A failing case re-raises its own error (file name included) in the caller.
    """
    args = [
        (c, dataset.labels, dataset.channel_names, seed + i) for i, c in enumerate(dataset.cases)
    ]
    bar = dict(total=len(args), desc="fingerprint", unit="case")
    if num_workers > 1:
        with ProcessPoolExecutor(num_workers) as pool:
            results = list(tqdm(pool.map(_analyse_case, *zip(*args, strict=True)), **bar))
    else:
        results = [_analyse_case(*a) for a in tqdm(args, **bar)]
    samples = np.concatenate([r.samples for r in results], axis=1)
    counts = Counter(c.diagnosis for c in dataset.cases if c.diagnosis is not None)
    return Fingerprint(
        channel_names=dataset.channel_names,
        labels=dataset.labels,
        classes=dataset.classes,
        cases=tuple(r.fingerprint for r in results),
        intensity=tuple(_stats(samples[c]) for c in range(samples.shape[0])),
        diagnosis_counts={name: counts.get(name, 0) for name in dataset.classes},
        num_cases_without_label=sum(c.label_path is None for c in dataset.cases),
        num_cases_without_diagnosis=sum(c.diagnosis is None for c in dataset.cases),
    )
