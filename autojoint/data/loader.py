"""Training batches: a full-resolution patch and the whole-scan view of each sampled case.

Built on batchgenerators' ``DataLoader`` so ``MultiThreadedAugmenter`` can run it in
worker processes. Random draws come from a ``numpy.random.Generator`` seeded per worker,
not from global state, so a run is reproducible for a seed and worker count.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from batchgenerators.dataloading.data_loader import DataLoader

from autojoint.preprocessing.preprocess import load_preprocessed


def sample_patch_start(
    shape: Sequence[int],
    patch: Sequence[int],
    rng: np.random.Generator,
    center: Sequence[int] | None = None,
) -> tuple[int, ...]:
    """Start index of a patch inside ``shape``; around ``center`` (lesion oversampling) or
    uniform. Starts may be negative or overhang when the volume is smaller than the patch;
    :func:`extract_patch` pads."""
    out = []
    for a, (s, p) in enumerate(zip(shape, patch, strict=True)):
        if center is None:
            lo, hi = min(0, s - p), max(0, s - p)
            out.append(int(rng.integers(lo, hi + 1)))
        else:
            # Put the lesion voxel anywhere in the patch, not always at its centre.
            out.append(int(center[a]) - int(rng.integers(0, p)))
    return tuple(out)


def extract_patch(
    array: np.ndarray, start: Sequence[int], patch: Sequence[int], fill: float
) -> np.ndarray:
    """Crop ``patch`` voxels from the trailing axes at ``start``, padding with ``fill``.

    Shape:
        array ``(..., Z, Y, X)`` -> ``(..., *patch)``.
    """
    lead = array.shape[: array.ndim - len(patch)]
    out = np.full(lead + tuple(patch), fill, dtype=array.dtype)
    src: list[slice] = []
    dst: list[slice] = []
    for st, p, s in zip(start, patch, array.shape[-len(patch) :], strict=True):
        a0, a1 = max(st, 0), min(st + p, s)
        src.append(slice(a0, max(a1, a0)))
        dst.append(slice(a0 - st, a0 - st + max(a1 - a0, 0)))
    out[(..., *dst)] = array[(..., *src)]  # type: ignore[index, arg-type]
    return out


class JointDataLoader(DataLoader):
    """Yields dicts with ``data`` (B,C,*patch), ``seg`` (B,1,*patch), ``cls_data``,
    ``cls_seg``, ``diagnosis`` (B,) with -1 for unknown, and ``has_mask`` (B,)."""

    def __init__(
        self,
        preprocessed_dir: Path,
        case_ids: Sequence[str],
        *,
        patch_size: Sequence[int],
        batch_size: int,
        classes: Sequence[str],
        seed: int,
        oversample_foreground: float = 0.33,
        num_workers: int = 1,
    ) -> None:
        super().__init__(
            list(case_ids),
            batch_size,
            num_workers,
            seed_for_shuffle=seed,
            return_incomplete=False,
            shuffle=True,
            infinite=True,
        )
        if not case_ids:
            raise ValueError("no training cases for this fold.")
        self.indices = list(range(len(case_ids)))  # required by batchgenerators' sampler
        self.preprocessed_dir = Path(preprocessed_dir)
        self.patch_size = tuple(int(p) for p in patch_size)
        self.classes = list(classes)
        self.seed = seed
        self.oversample_foreground = oversample_foreground
        self._rng: np.random.Generator | None = None

    @property
    def rng(self) -> np.random.Generator:
        if self._rng is None:  # created in the worker, after thread_id was assigned
            self._rng = np.random.default_rng([self.seed, self.thread_id])
        return self._rng

    def _load_sample(self, case_id: str, force_foreground: bool) -> dict:
        case = load_preprocessed(self.preprocessed_dir, case_id)
        data = case["data"]
        has_mask = "seg" in case
        center = None
        if force_foreground and has_mask and len(case["fg_coords"]):
            center = case["fg_coords"][self.rng.integers(len(case["fg_coords"]))]
        start = sample_patch_start(data.shape[1:], self.patch_size, self.rng, center)
        fill = data.reshape(data.shape[0], -1).min(axis=1)
        patch = np.stack(
            [
                extract_patch(c, start, self.patch_size, float(f))
                for c, f in zip(data, fill, strict=True)
            ]
        )
        seg = (
            extract_patch(case["seg"], start, self.patch_size, 0)
            if has_mask
            else np.zeros(self.patch_size, np.uint8)
        )
        cls_data = case["cls_data"]
        cls_seg = case.get("cls_seg", np.zeros(cls_data.shape[1:], np.uint8))
        diag = case["properties"]["diagnosis"]
        return {
            "data": patch,
            "seg": seg[None],
            "cls_data": cls_data,
            "cls_seg": cls_seg,
            "diagnosis": self.classes.index(diag) if diag in self.classes else -1,
            "has_mask": has_mask,
        }

    def generate_train_batch(self) -> dict:
        ids = [self._data[i] for i in self.get_indices()]
        n = len(ids)
        # As nnU-Net: the last third of each batch is forced to contain lesion voxels.
        n_fg = int(round(n * self.oversample_foreground))
        samples = [self._load_sample(c, i >= n - n_fg) for i, c in enumerate(ids)]
        return {
            "data": np.stack([s["data"] for s in samples]).astype(np.float32),
            "seg": np.stack([s["seg"] for s in samples]).astype(np.int16),
            "cls_data": np.stack([s["cls_data"] for s in samples]).astype(np.float32),
            "cls_seg": np.stack([s["cls_seg"] for s in samples]).astype(np.int16),
            "diagnosis": np.array([s["diagnosis"] for s in samples], dtype=np.int64),
            "has_mask": np.array([s["has_mask"] for s in samples], dtype=bool),
            "keys": ids,
        }
