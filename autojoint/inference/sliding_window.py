"""Sliding-window prediction with Gaussian tile weighting."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from autojoint.networks.joint_net import JointNet, fuse_scales


def tile_starts(size: int, patch: int, step_fraction: float) -> list[int]:
    """Evenly spaced tile starts covering ``[0, size)`` with overlap >= 1 - step_fraction."""
    if size <= patch:
        return [0]
    # At least one voxel per step: a 1-voxel patch axis (2d configurations) would otherwise
    # repeat starts, predicting some slices three times and others once.
    n = int(np.ceil((size - patch) / max(patch * step_fraction, 1.0))) + 1
    return [int(round(v)) for v in np.linspace(0, size - patch, n)]


def gaussian_importance(patch: Sequence[int], sigma_scale: float = 1 / 8) -> np.ndarray:
    """Weights peaking at the tile centre: predictions near tile borders see less context."""
    grids = np.meshgrid(*[np.arange(p) - (p - 1) / 2 for p in patch], indexing="ij")
    sq = sum((g / max(p * sigma_scale, 1e-6)) ** 2 for g, p in zip(grids, patch, strict=True))
    w = np.exp(-0.5 * sq)
    w /= w.max()
    return np.maximum(w, 1e-3 * w.max() + 1e-8).astype(np.float32)  # never exactly 0


def sliding_window_predict(
    predict: Callable[[torch.Tensor], torch.Tensor],
    data: np.ndarray,
    patch_size: Sequence[int],
    num_classes: int,
    *,
    step_fraction: float = 0.5,
    device: torch.device | str = "cpu",
    show_progress: bool = True,
) -> np.ndarray:
    """Tile ``data``, run ``predict`` on each tile, blend with Gaussian weights.

    ``predict`` maps ``(1, C, *patch)`` to per-class scores ``(1, K, *patch)``
    (probabilities or logits). Volumes smaller than the patch are padded with their minimum.

    Shape:
        data ``(C, Z, Y, X)`` -> ``(K, Z, Y, X)`` float32.
    """
    patch = [int(p) for p in patch_size]
    shape = data.shape[1:]
    padded_shape = [max(s, p) for s, p in zip(shape, patch, strict=True)]
    if padded_shape != list(shape):
        pad_val = float(data.min())
        padded = np.full((data.shape[0], *padded_shape), pad_val, dtype=np.float32)
        padded[(slice(None), *[slice(0, s) for s in shape])] = data
    else:
        padded = data.astype(np.float32, copy=False)
    weight = gaussian_importance(patch)
    acc = np.zeros((num_classes, *padded_shape), dtype=np.float32)
    norm = np.zeros(padded_shape, dtype=np.float32)
    starts = [tile_starts(s, p, step_fraction) for s, p in zip(padded_shape, patch, strict=True)]
    tiles = [(z, y, x) for z in starts[0] for y in starts[1] for x in starts[2]]
    for z, y, x in tqdm(tiles, desc="tiles", unit="tile", leave=False, disable=not show_progress):
        sl = (slice(z, z + patch[0]), slice(y, y + patch[1]), slice(x, x + patch[2]))
        tile = torch.from_numpy(np.ascontiguousarray(padded[(slice(None), *sl)][None])).to(device)
        scores = predict(tile)[0].detach().float().cpu().numpy()
        acc[(slice(None), *sl)] += scores * weight
        norm[sl] += weight
    out = acc / norm
    return out[(slice(None), *[slice(0, s) for s in shape])]


def network_probabilities(
    net: JointNet,
    data: np.ndarray,
    patch_size: Sequence[int],
    num_classes: int,
    *,
    context: torch.Tensor | None = None,
    step_fraction: float = 0.5,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Softmax of the eta-fused segmentation (eq. 1/3) of a joint network, tiled.

    ``context`` is the case's whole-scan view, mixed into every tile when the network has a
    cross-stitch stem (ignored otherwise).

    Shape:
        data ``(C, Z, Y, X)`` -> ``(K, Z, Y, X)`` float32.
    """

    def predict(x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(fuse_scales(net.seg(x, context), net.eta), dim=1)

    return sliding_window_predict(
        predict,
        data,
        patch_size,
        num_classes,
        step_fraction=step_fraction,
        device=device,
        show_progress=False,
    )
