"""Independent references for the surface metrics, sharing no code with autojoint.

* brute force: surfaces found by checking the 6 face neighbours of every voxel one by one
  (outside the image = background), distances by comparing every pair of surface voxels;
* medpy 0.5.2 (directed distances, HD95) and MONAI 1.6.1 (symmetric ASD, NSD, directed
  HD95; the area-weighted surfel NSD, ported from DeepMind's surface-distance), imported
  lazily so a missing test extra skips instead of failing collection.

The pooled metrics are recomputed here from the definitions in docs/evaluation.md.
"""

from __future__ import annotations

import importlib
import itertools
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest


def brute_surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` with at least one face neighbour outside the mask or the image."""
    mask = np.asarray(mask, bool)
    out = np.zeros_like(mask)
    for idx in itertools.product(*(range(n) for n in mask.shape)):
        if not mask[idx]:
            continue
        for axis, step in itertools.product(range(mask.ndim), (-1, 1)):
            nb = list(idx)
            nb[axis] += step
            if not 0 <= nb[axis] < mask.shape[axis] or not mask[tuple(nb)]:
                out[idx] = True
                break
    return out


def brute_directed(
    from_mask: np.ndarray, to_mask: np.ndarray, spacing: tuple[float, ...]
) -> np.ndarray:
    """All-pairs nearest distances (mm) from the surface of ``from_mask`` to ``to_mask``'s."""
    a = np.argwhere(brute_surface(from_mask)) * np.asarray(spacing)
    b = np.argwhere(brute_surface(to_mask)) * np.asarray(spacing)
    if len(a) == 0:
        return np.zeros(0)
    if len(b) == 0:
        return np.full(len(a), np.inf)
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)).min(axis=1)


def pooled_metrics(d_pr: np.ndarray, d_rp: np.ndarray, tolerance: float) -> dict[str, float]:
    """The documented formulas, written out again (both surfaces non-empty).

    As documented, a distance within 1e-9 mm of the tolerance counts as within: the
    brute-force and distance-transform sums of squares round differently.
    """
    d = np.concatenate([d_pr, d_rp])
    tolerance += 1e-9
    return {
        "asd": float(d.mean()),
        "rmsd": float(np.sqrt((d**2).mean())),
        "hd95": float(np.percentile(d, 95)),
        "nsd": float((d <= tolerance).sum() / d.size),
        "aso": float(0.5 * ((d_pr <= tolerance).mean() + (d_rp <= tolerance).mean())),
    }


def medpy_directed(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """medpy's distances from the surface of ``pred`` to that of ``ref`` (6-connected)."""
    binary = pytest.importorskip("medpy.metric.binary")
    return np.asarray(getattr(binary, "__surface_distances")(pred, ref, spacing, 1))


def medpy_hd95(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...]) -> float:
    """medpy's HD95: the 95th percentile of both directed sets pooled."""
    binary = pytest.importorskip("medpy.metric.binary")
    return float(binary.hd95(pred, ref, voxelspacing=spacing, connectivity=1))


@contextmanager
def _monai(pred: np.ndarray, ref: np.ndarray) -> Iterator[tuple[Any, Any, Any]]:
    """``monai.metrics`` and both masks as ``(1, 1, ...)`` float tensors, with MONAI's own
    FutureWarnings / DeprecationWarnings about its API silenced; skips without MONAI."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("monai")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        metrics = importlib.import_module("monai.metrics")
        p = torch.from_numpy(np.asarray(pred, np.float32)[None, None])
        r = torch.from_numpy(np.asarray(ref, np.float32)[None, None])
        yield metrics, p, r


def monai_metrics(
    pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...], tolerance: float
) -> dict[str, float]:
    """MONAI's symmetric ASD, NSD (edge voxels counted) and max-of-directed HD95."""
    with _monai(pred, ref) as (metrics, p, r):
        sp = [float(s) for s in spacing]
        asd = metrics.compute_average_surface_distance(
            p, r, include_background=True, symmetric=True, spacing=sp
        )
        nsd = metrics.compute_surface_dice(
            p, r, [tolerance], include_background=True, spacing=sp, use_subvoxels=False
        )
        hd95 = metrics.compute_hausdorff_distance(
            p, r, include_background=True, percentile=95, spacing=sp
        )
    return {"asd": float(asd), "nsd": float(nsd), "hd95_max_directed": float(hd95)}


def monai_surfel_nsd(
    pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...], tolerance: float
) -> float:
    """MONAI's NSD with ``use_subvoxels=True``: DeepMind's area-weighted surfels (2D or 3D).

    MONAI builds the neighbourhood codes in float32 and returns float32, so agreement is
    to about 1e-7, not to the last bit.
    """
    with _monai(pred, ref) as (metrics, p, r):
        nsd = metrics.compute_surface_dice(
            p,
            r,
            [tolerance],
            include_background=True,
            spacing=[float(s) for s in spacing],
            use_subvoxels=True,
        )
    return float(nsd)
