"""Sliding-window prediction with Gaussian tile weighting, batched tiles and mirroring TTA.

With a whole-scan view (the cross-stitch stem), each tile is predicted with its own box, where
it lies in the case and so in the view (``autojoint.data.loader.patch_box``), and a mirrored
tile with its box mirrored the same way (first and last face swapped), so the view's
features are cropped at the tile's place and flipped with the tile.

Device-agnostic: tiles go to ``device``; the blended result is accumulated on ``device``
too (in half precision on CUDA, where memory is scarce and bandwidth matters) and falls back
to float32 CPU buffers when the device runs out of memory.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from autojoint.data.loader import patch_box
from autojoint.networks.joint_net import JointNet
from autojoint.runtime.allocator import reusing_freed_memory

logger = logging.getLogger(__name__)


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


def mirror_combinations(axes: Sequence[int]) -> list[tuple[int, ...]]:
    """Every subset of the spatial ``axes`` (the empty one = no flip): 2^len(axes) passes."""
    axes = sorted({int(a) for a in axes})
    return [c for r in range(len(axes) + 1) for c in itertools.combinations(axes, r)]


def tile_boxes(
    starts: Sequence[Sequence[int]], patch: Sequence[int], shape: Sequence[int]
) -> torch.Tensor:
    """Where each tile lies in the case of spatial ``shape`` (before padding), normalised
    (:func:`autojoint.data.loader.patch_box`); parts of padded tiles lie beyond 1.

    Shape:
        ``starts`` ``(B, D)`` -> ``(B, 2, D)`` float32.
    """
    return torch.from_numpy(np.stack([patch_box(st, patch, shape) for st in starts]))


def mirror_boxes(boxes: torch.Tensor, axes: Sequence[int]) -> torch.Tensor:
    """The boxes of tiles mirrored along the spatial ``axes``: first and last face swapped,
    so the crop of the view comes out mirrored like the tile.

    Shape:
        ``(B, 2, D)`` -> ``(B, 2, D)``.
    """
    out = boxes.clone()
    for a in axes:
        out[:, :, a] = boxes[:, :, a].flip(1)
    return out


def predict_mirrored(
    predict: Callable[..., torch.Tensor],
    tiles: torch.Tensor,
    mirror_axes: Sequence[int] = (),
    boxes: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean of ``predict`` over every mirrored copy of ``tiles`` (flipped back).

    ``mirror_axes`` are spatial axes (0 = first spatial axis of the tile), the axes the
    trainer mirrored patches along; ``()`` is a single plain pass. With ``boxes`` (where
    each tile lies in the case) ``predict`` is called as ``predict(tiles, boxes)``, the
    boxes of a mirrored copy mirrored too (:func:`mirror_boxes`); else as
    ``predict(tiles)``.

    Shape:
        tiles ``(B, C, Z, Y, X)``, boxes ``(B, 2, 3)`` -> ``(B, K, Z, Y, X)``.
    """
    # Flipping a one-voxel axis (a 2D plan's slice axis) is the identity: its copies would
    # only repeat passes, doubling a 2D prediction's cost for the same mean.
    combos = mirror_combinations([a for a in mirror_axes if tiles.shape[a + 2] > 1])
    out: torch.Tensor | None = None
    for combo in combos:
        dims = [a + 2 for a in combo]
        x = torch.flip(tiles, dims) if dims else tiles
        scores = predict(x) if boxes is None else predict(x, mirror_boxes(boxes, combo))
        scores = torch.flip(scores, dims) if dims else scores
        out = scores if out is None else out + scores
    assert out is not None
    return out / len(combos)


def _zeros(shape: Sequence[int], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Buffer allocation (a seam for tests that inject an out-of-memory error)."""
    return torch.zeros(tuple(shape), device=device, dtype=dtype)


def accumulation_dtype(device: torch.device) -> torch.dtype:
    """Half precision on CUDA (halves the buffer memory; probabilities need no more), else
    float32."""
    return torch.float16 if device.type == "cuda" else torch.float32


def _is_out_of_memory(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


def _blend(
    predict: Callable[..., torch.Tensor],
    padded: np.ndarray,
    patch: list[int],
    num_classes: int,
    tiles: list[tuple[int, int, int]],
    *,
    device: torch.device,
    buffer_device: torch.device,
    tile_batch: int,
    mirror_axes: Sequence[int],
    show_progress: bool,
    box_shape: Sequence[int] | None,
) -> np.ndarray:
    """One pass over all tiles accumulating on ``buffer_device``; returns float32 numpy."""
    dtype = accumulation_dtype(buffer_device)
    spatial = padded.shape[1:]
    acc = _zeros((num_classes, *spatial), buffer_device, dtype)
    norm = _zeros(spatial, buffer_device, dtype)
    weight = torch.from_numpy(gaussian_importance(patch)).to(buffer_device, dtype)
    source = torch.from_numpy(padded)
    batches = [tiles[i : i + tile_batch] for i in range(0, len(tiles), tile_batch)]
    progress = tqdm(batches, desc="tiles", unit="batch", leave=False, disable=not show_progress)
    # Every batch allocates and frees the same activations: on the CPU, reuse them instead
    # of having the kernel map and zero them again (runtime/allocator.py). The buffers above
    # are allocated outside, so they do not fragment the reused heap.
    with reusing_freed_memory():
        for batch in progress:
            slices = [
                (slice(z, z + patch[0]), slice(y, y + patch[1]), slice(x, x + patch[2]))
                for z, y, x in batch
            ]
            x = torch.stack([source[(slice(None), *sl)] for sl in slices]).to(device)
            boxes = None if box_shape is None else tile_boxes(batch, patch, box_shape).to(device)
            scores = predict_mirrored(predict, x, mirror_axes, boxes)
            scores = scores.detach().to(buffer_device, dtype)
            for i, sl in enumerate(slices):
                acc[(slice(None), *sl)] += scores[i] * weight
                norm[sl] += weight
    return (acc.float() / norm.float()).cpu().numpy()


def sliding_window_predict(
    predict: Callable[..., torch.Tensor],
    data: np.ndarray,
    patch_size: Sequence[int],
    num_classes: int,
    *,
    step_fraction: float = 0.5,
    device: torch.device | str = "cpu",
    show_progress: bool = True,
    tile_batch: int = 1,
    mirror_axes: Sequence[int] = (),
    with_boxes: bool = False,
) -> np.ndarray:
    """Tile ``data``, run ``predict`` on batches of tiles, blend with Gaussian weights.

    ``predict`` maps ``(B, C, *patch)`` to per-class scores ``(B, K, *patch)``
    (probabilities or logits); ``with_boxes`` calls it as ``predict(tiles, boxes)`` with
    each tile's box in ``data`` (:func:`tile_boxes`, mirrored with the tile).
    Volumes smaller than the patch are padded with their minimum.
    ``mirror_axes`` averages each tile's scores over its mirrored copies (test-time
    augmentation). Results accumulate on ``device`` (fp16 on CUDA); if that runs out of
    memory the case is redone with float32 CPU buffers.

    Shape:
        data ``(C, Z, Y, X)`` -> ``(K, Z, Y, X)`` float32.

    Raises:
        ValueError: ``tile_batch`` < 1.
    """
    if tile_batch < 1:
        raise ValueError(f"tile_batch must be >= 1, got {tile_batch}.")
    device = torch.device(device)
    patch = [int(p) for p in patch_size]
    shape = data.shape[1:]
    padded_shape = [max(s, p) for s, p in zip(shape, patch, strict=True)]
    if padded_shape != list(shape):
        pad_val = float(data.min())
        padded = np.full((data.shape[0], *padded_shape), pad_val, dtype=np.float32)
        padded[(slice(None), *[slice(0, s) for s in shape])] = data
    else:
        padded = np.ascontiguousarray(data, dtype=np.float32)
    starts = [tile_starts(s, p, step_fraction) for s, p in zip(padded_shape, patch, strict=True)]
    tiles = [(z, y, x) for z in starts[0] for y in starts[1] for x in starts[2]]
    kwargs = {
        "device": device,
        "tile_batch": tile_batch,
        "mirror_axes": tuple(mirror_axes),
        "show_progress": show_progress,
        "box_shape": tuple(shape) if with_boxes else None,
    }
    try:
        out = _blend(predict, padded, patch, num_classes, tiles, buffer_device=device, **kwargs)  # type: ignore[arg-type]
    except (torch.OutOfMemoryError, RuntimeError) as err:
        if not _is_out_of_memory(err):
            raise
        logger.warning(
            "out of memory with result buffers on %s (%s); redoing this case with CPU buffers.",
            device,
            str(err).splitlines()[0] if str(err) else type(err).__name__,
        )
        if device.type == "cuda":
            torch.cuda.empty_cache()
        cpu = torch.device("cpu")
        out = _blend(predict, padded, patch, num_classes, tiles, buffer_device=cpu, **kwargs)  # type: ignore[arg-type]
    return out[(slice(None), *[slice(0, s) for s in shape])]


def tile_probabilities(
    net: JointNet, context: torch.Tensor | None = None
) -> Callable[..., torch.Tensor]:
    """``predict(tiles, boxes=None)``: the fused per-class probabilities of a batch of
    tiles, each mixing in ``context`` (the whole-scan view) at its box when the network
    has a cross-stitch stem.

    Fused in float32 even under autocast: bfloat16 probabilities would be rounded to ~3
    digits and no longer sum to 1.

    Shape:
        tiles ``(B, C, Z, Y, X)``, boxes ``(B, 2, 3)`` -> ``(B, K, Z, Y, X)`` float32.
    """

    def predict(x: torch.Tensor, boxes: torch.Tensor | None = None) -> torch.Tensor:
        ctx = None if context is None else context.expand(x.shape[0], *context.shape[1:])
        return net.fused_probabilities([s.float() for s in net.seg(x, ctx, boxes)])

    return predict


def network_probabilities(
    net: JointNet,
    data: np.ndarray,
    patch_size: Sequence[int],
    num_classes: int,
    *,
    context: torch.Tensor | None = None,
    step_fraction: float = 0.5,
    device: torch.device | str = "cpu",
    tile_batch: int = 1,
    mirror_axes: Sequence[int] = (),
) -> np.ndarray:
    """Per-class probabilities of the eta-fused segmentation of a joint network, tiled:
    ``net.fused_probabilities`` (the plan's ``network.fusion``, ``softmax`` or
    ``sigmoid_sum``).

    ``context`` is the case's whole-scan view (``(1, C, *view)``), mixed into every tile
    when the network has a cross-stitch stem (ignored otherwise): each tile gets its own box
    in ``data``, so the stem crops the view's features at the tile's place. The view is not
    mirrored; a mirrored tile gets its box mirrored, so its crop of the view's features is
    mirrored with it (training mirrors patch and view independently and tracks the box the
    same way).

    Shape:
        data ``(C, Z, Y, X)`` -> ``(K, Z, Y, X)`` float32.
    """

    return sliding_window_predict(
        tile_probabilities(net, context),
        data,
        patch_size,
        num_classes,
        step_fraction=step_fraction,
        device=device,
        show_progress=False,
        tile_batch=tile_batch,
        mirror_axes=mirror_axes,
        with_boxes=context is not None,
    )
