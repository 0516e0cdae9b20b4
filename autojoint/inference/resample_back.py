"""Per-class maps back to the input grid with torch, on the prediction device.

The way back is linear interpolation with pixel centres aligned, plus a Gaussian
anti-aliasing blur along every axis that shrinks: the same arithmetic as
``autojoint.preprocessing.resample.resample_image(..., order=1)`` (skimage's ``resize``), so
a mask does not depend on which path made it. Done with torch it runs on the
GPU when there is one and, on the CPU, ~7x faster than skimage on one thread (3 classes,
60 x 96 x 96 -> 150 x 256 x 256: 0.20 s against 1.48 s, largest difference 2e-6).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

# scipy.ndimage.gaussian_filter's default: the kernel reaches 4 sigma each side
GAUSSIAN_TRUNCATE = 4.0


def _gaussian_kernel(sigma: float, device: torch.device) -> torch.Tensor:
    radius = int(GAUSSIAN_TRUNCATE * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return (kernel / kernel.sum()).to(device=device, dtype=torch.float32)


def _blur_axis(volume: torch.Tensor, axis: int, sigma: float) -> torch.Tensor:
    """Gaussian blur of ``(N, C, Z, Y, X)`` along spatial ``axis`` (0-2), edges repeated
    (scipy's ``mode="nearest"``, which skimage uses for ``mode="edge"``)."""
    kernel = _gaussian_kernel(sigma, volume.device)
    radius = (kernel.numel() - 1) // 2
    shape = [1, 1, 1, 1, 1]
    shape[2 + axis] = kernel.numel()
    pad = [0, 0, 0, 0, 0, 0]  # F.pad order: x, y, z (last axis first)
    pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = radius
    n, c = volume.shape[:2]
    flat = volume.reshape(n * c, 1, *volume.shape[2:])
    out = F.conv3d(F.pad(flat, pad, mode="replicate"), kernel.reshape(shape))
    return out.reshape(n, c, *out.shape[2:])


def resize_linear(
    volumes: np.ndarray, new_shape: Sequence[int], device: torch.device | str = "cpu"
) -> np.ndarray:
    """Linear resampling of ``(K, Z, Y, X)`` maps to ``(K, *new_shape)`` float32, with
    anti-aliasing along shrinking axes, computed on ``device`` (CPU if it runs out of
    memory there)."""
    new_shape = tuple(int(s) for s in new_shape)
    if tuple(volumes.shape[1:]) == new_shape:
        return volumes.astype(np.float32, copy=True)
    try:
        return _resize_on(volumes, new_shape, torch.device(device))
    except torch.OutOfMemoryError:
        if torch.device(device).type == "cpu":
            raise
        logger.warning("resampling to %s ran out of memory on %s; using the CPU", new_shape, device)
        return _resize_on(volumes, new_shape, torch.device("cpu"))


@torch.inference_mode()
def _resize_on(volumes: np.ndarray, new_shape: tuple[int, ...], device: torch.device) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(volumes, dtype=np.float32)).to(device)[None]
    for axis, (old, new) in enumerate(zip(volumes.shape[1:], new_shape, strict=True)):
        if new < old:
            x = _blur_axis(x, axis, (old / new - 1) / 2)
    out = F.interpolate(x, size=new_shape, mode="trilinear", align_corners=False)
    return out[0].cpu().numpy()
