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

from autojoint.data.batch import Batch
from autojoint.preprocessing.preprocess import load_preprocessed


def sample_patch_start(
    shape: Sequence[int],
    patch: Sequence[int],
    rng: np.random.Generator,
    center: Sequence[int] | None = None,
) -> tuple[int, ...]:
    """Start index of a patch inside ``shape``: uniform, or holding ``center`` (lesion
    oversampling) at a uniform position of the patch.

    Either way the start stays in ``[min(0, s - p), max(0, s - p)]`` per axis: a patch never
    overhangs a case larger than it (a lesion near the edge is then off-centre, not half
    padding), and one larger than its case holds all of it. (nnU-Net's loader also keeps
    random patches inside larger cases; it centres smaller ones and lesion voxels.)
    :func:`extract_patch` pads what lies outside.
    """
    out = []
    for a, (s, p) in enumerate(zip(shape, patch, strict=True)):
        lo, hi = min(0, s - p), max(0, s - p)
        if center is None:
            out.append(int(rng.integers(lo, hi + 1)))
        else:
            start = int(center[a]) - int(rng.integers(0, p))
            out.append(min(max(start, lo), hi))
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


def patch_box(start: Sequence[float], size: Sequence[int], shape: Sequence[int]) -> np.ndarray:
    """Where a patch lies in its case, in normalised coordinates of the case.

    0 and 1 are the case's outer faces (voxel ``i`` spans ``[i, i + 1] / N``), so the box
    also says where the patch lies in the case's whole-scan view, which resamples the same
    cropped case to the classification shape with the same half-voxel convention
    (``autojoint.preprocessing.resample.resample_image``). Patches that overhang the case
    (padding) give coordinates outside ``[0, 1]``. This is the box the cross-stitch stem
    crops the view's features to (``autojoint.networks.cross_stitch.crop_box``).

    Shape:
        ``(D,)`` start, size and shape -> ``(2, D)`` float32: row 0 the first face
        ``start / N``, row 1 the last face ``(start + size) / N``.
    """
    first = np.asarray(start, np.float64)
    n = np.asarray(shape, np.float64)
    return np.stack([first / n, (first + np.asarray(size, np.float64)) / n]).astype(np.float32)


def pick_foreground_voxel(locations: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """A lesion label uniformly among those present, then one of its voxels (as nnU-Net), so
    a rare label (consolidation beside much ground-glass) is still oversampled.

    Shape:
        locations ``(N, 4)`` rows ``(label, z, y, x)`` -> ``(3,)`` or None when N == 0.
    """
    if len(locations) == 0:
        return None
    labels = np.unique(locations[:, 0])
    rows = locations[locations[:, 0] == labels[rng.integers(len(labels))]]
    return rows[rng.integers(len(rows)), 1:]


def forced_foreground_slots(
    batch_size: int, fraction: float, offset: int = 0, global_batch_size: int | None = None
) -> list[bool]:
    """Which samples of a (local) batch must hold a lesion voxel (lesion oversampling).

    As nnU-Net: the last ``round(global_batch * fraction)`` samples of the global batch. A
    rank of a distributed run holds samples ``offset .. offset + batch_size - 1`` of it, so the
    ratio holds for the global batch even when each rank's share is one sample.
    """
    total = batch_size if global_batch_size is None else global_batch_size
    n_fg = int(round(total * fraction))
    return [offset + i >= total - n_fg for i in range(batch_size)]


class JointDataLoader(DataLoader):
    """Yields :class:`autojoint.data.batch.Batch` dicts: ``data`` (B,C,*patch), ``seg``
    (B,1,*patch), ``cls_data``, ``cls_seg``, ``diagnosis`` (B,) with -1 for unknown,
    ``has_mask`` (B,) and ``patch_box`` (B,2,D) float32: where the central ``patch_size``
    region of each crop lies in its case and view (:func:`patch_box`), which the
    augmentation's mirroring keeps up to date.

    Cases are read through memory maps (only the cropped patch is read from disk).
    ``loaded_patch_size`` (default ``patch_size``) is the size cropped from the case; it is
    larger when a spatial augmentation follows that crops back to ``patch_size`` around the
    centre (so rotated corners hold image, not padding). Oversampled lesion voxels land in
    that central ``patch_size`` region.
    """

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
        loaded_patch_size: Sequence[int] | None = None,
        batch_offset: int = 0,
        global_batch_size: int | None = None,
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
        self.loaded_patch_size = tuple(
            int(p) for p in (loaded_patch_size if loaded_patch_size is not None else patch_size)
        )
        if any(a < b for a, b in zip(self.loaded_patch_size, self.patch_size, strict=True)):
            raise ValueError(
                f"loaded_patch_size {self.loaded_patch_size} smaller than {self.patch_size}."
            )
        self.classes = list(classes)
        self.seed = seed
        self.oversample_foreground = oversample_foreground
        self.forced = forced_foreground_slots(
            batch_size, oversample_foreground, batch_offset, global_batch_size
        )
        self._rng: np.random.Generator | None = None

    @property
    def rng(self) -> np.random.Generator:
        if self._rng is None:  # created in the worker, after thread_id was assigned
            self._rng = np.random.default_rng([self.seed, self.thread_id])
        return self._rng

    def _start(self, shape: Sequence[int], center: np.ndarray | None) -> tuple[int, ...]:
        """Start of the loaded crop: the central ``patch_size`` region is placed in the case
        (:func:`sample_patch_start`), then the crop grows around it. Placing the larger crop
        itself would let the region drift off a case smaller than the crop (a 2D slice
        against a crop enlarged for rotation: half of each patch was padding)."""
        big, small = self.loaded_patch_size, self.patch_size
        where = None if center is None else [int(c) for c in center]
        inner = sample_patch_start(shape, small, self.rng, where)
        return tuple(s - (b - p) // 2 for s, b, p in zip(inner, big, small, strict=True))

    def _load_sample(self, case_id: str, force_foreground: bool) -> dict:
        case = load_preprocessed(self.preprocessed_dir, case_id, mmap_mode="r")
        data = case.data
        center = None
        if force_foreground and case.seg is not None and case.fg_locations is not None:
            center = pick_foreground_voxel(np.asarray(case.fg_locations), self.rng)
        start = self._start(data.shape[1:], center)
        size = self.loaded_patch_size
        # Pad with the crop's own minimum: the volume's would read the whole memory map.
        patch = np.stack([extract_patch(c, start, size, np.nan) for c in data]).astype(np.float32)
        for c in patch:
            c[np.isnan(c)] = np.nanmin(c)
        has_mask = case.seg is not None
        seg = (
            np.zeros(size, np.uint8)
            if case.seg is None
            else extract_patch(case.seg, start, size, 0)
        )
        # The box of the central patch_size region, which a spatial augmentation crops back
        # to (batchgenerators' centre crop starts at (loaded - patch) // 2).
        inner = [s + (b - p) // 2 for s, b, p in zip(start, size, self.patch_size, strict=True)]
        box = patch_box(inner, self.patch_size, data.shape[1:])
        cls_data = np.asarray(case.cls_data)
        cls_seg = np.asarray(
            case.cls_seg if case.cls_seg is not None else np.zeros(cls_data.shape[1:], np.uint8)
        )
        diag = case.diagnosis
        return {
            "data": patch,
            "seg": seg[None],
            "cls_data": cls_data,
            "cls_seg": cls_seg,
            "diagnosis": self.classes.index(diag) if diag in self.classes else -1,
            "has_mask": has_mask,
            "patch_box": box,
        }

    def generate_train_batch(self) -> Batch:
        ids = [self._data[i] for i in self.get_indices()]
        samples = [self._load_sample(c, f) for c, f in zip(ids, self.forced, strict=True)]
        return {
            "data": np.stack([s["data"] for s in samples]).astype(np.float32),
            "seg": np.stack([s["seg"] for s in samples]).astype(np.int16),
            "cls_data": np.stack([s["cls_data"] for s in samples]).astype(np.float32),
            "cls_seg": np.stack([s["cls_seg"] for s in samples]).astype(np.int16),
            "diagnosis": np.array([s["diagnosis"] for s in samples], dtype=np.int64),
            "has_mask": np.array([s["has_mask"] for s in samples], dtype=bool),
            "patch_box": np.stack([s["patch_box"] for s in samples]).astype(np.float32),
            "keys": ids,
        }
