"""Preprocess cases as the plan says: crop to body, normalise, resample, build the views.

Each case yields two views of one scan:
  * the full-resolution volume at the plan's target spacing (segmentation patches);
  * the whole-scan classification view, the cropped scan resized to the plan's fixed
    ``classification_shape`` (in the spirit of DeepSC-COVID's equidistant slices), so the
    diagnosis sees every lesion at once.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from autojoint.arrays.cropping import BBox, bbox_of, body_mask, crop
from autojoint.io.case_loading import load_channels, load_label
from autojoint.io.dataset import RawCase, RawDataset, is_ct
from autojoint.io.files import atomic_write, read_json, remove_stale_temp_files, write_json
from autojoint.io.image_io import ImageGeometry
from autojoint.io.paths import check_case_name
from autojoint.io.typed_json import field_problems, from_json
from autojoint.planning.schema import Plan
from autojoint.preprocessing.lung_mask import lung_crop
from autojoint.preprocessing.normalization import normalize
from autojoint.preprocessing.resample import (
    resample_image,
    resample_label,
    shape_for_spacing,
    thick_axis,
)

logger = logging.getLogger(__name__)

MAX_FOREGROUND_SAMPLES = 10_000


@dataclass(frozen=True)
class PreprocessedCase:
    """One preprocessed case: what :func:`preprocess_arrays` returns,
    :func:`save_preprocessed` writes and :func:`load_preprocessed` reads back.

    Arrays are in the plan's transposed axis order. ``geometry`` (of the raw image) and
    ``bbox`` (the crop, raw array axes) map results back to the input grid.

    Shape:
        data: ``(C, Z, Y, X)`` at target spacing; seg: ``(Z, Y, X)`` or None;
        cls_data: ``(C, *classification_shape)`` (``(C, 1, 1, 1)`` zeros without a view);
        cls_seg: ``classification_shape`` or None; fg_locations: ``(N, 4)`` int32 rows
        ``(label, z, y, x)`` (:func:`foreground_locations`), or None: no mask, or not drawn
        yet (:func:`save_preprocessed` draws them from ``seg``).
    """

    case_id: str
    data: np.ndarray
    seg: np.ndarray | None
    cls_data: np.ndarray
    cls_seg: np.ndarray | None
    geometry: ImageGeometry
    bbox: BBox
    diagnosis: str | None
    fg_locations: np.ndarray | None = None


def transpose_spatial(array: np.ndarray, order: tuple[int, ...]) -> np.ndarray:
    """Permute the trailing three (spatial) axes of ``array`` by ``order``; leading axes kept.

    Shape:
        ``(..., A0, A1, A2)`` -> ``(..., A[order[0]], A[order[1]], A[order[2]])``.
    """
    lead = array.ndim - 3
    return np.transpose(array, tuple(range(lead)) + tuple(lead + a for a in order))


def preprocess_arrays(
    case_id: str,
    data: np.ndarray,
    geometry: ImageGeometry,
    seg: np.ndarray | None,
    plan: Plan,
    diagnosis: str | None = None,
) -> PreprocessedCase:
    """Crop, normalise, transpose (coarse axis first) and resample one case held in memory
    (training and inference); arrays of the result are in the plan's transposed order."""
    data, lung_box = lung_crop(data, geometry.spacing, plan.lung_mask, plan.channel_names)
    bbox = lung_box or bbox_of(body_mask(data, is_ct=is_ct(plan.channel_names)))
    fwd = plan.transpose_forward
    data_c = transpose_spatial(normalize(crop(data, bbox), plan.normalization), fwd)
    seg_c = transpose_spatial(crop(seg, bbox), fwd) if seg is not None else None
    spacing = tuple(geometry.spacing[a] for a in fwd)
    new_shape = shape_for_spacing(data_c.shape[1:], spacing, plan.target_spacing)
    thick = thick_axis(spacing, plan.target_spacing)
    data_r = resample_image(data_c, new_shape, separate_axis=thick)
    seg_r = (
        resample_label(seg_c, new_shape, plan.num_labels, separate_axis=thick)
        if seg_c is not None
        else None
    )
    view = plan.classification_shape  # None exactly when the plan has no diagnosis classes
    if view is not None:
        cls_data = resample_image(data_c, view, order=1)
        cls_seg = resample_label(seg_c, view, plan.num_labels) if seg_c is not None else None
    else:
        cls_data, cls_seg = np.zeros((data.shape[0], 1, 1, 1), np.float32), None
    return PreprocessedCase(case_id, data_r, seg_r, cls_data, cls_seg, geometry, bbox, diagnosis)


def foreground_coordinates(seg: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Up to 10,000 lesion voxel coordinates ``(N, 3)`` for foreground oversampling."""
    coords = np.argwhere(seg > 0)
    if len(coords) > MAX_FOREGROUND_SAMPLES:
        coords = coords[rng.choice(len(coords), MAX_FOREGROUND_SAMPLES, replace=False)]
    return coords.astype(np.int32)


def foreground_locations(seg: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per lesion label, up to 10,000 of its voxel coordinates, so oversampling can pick a
    label first and a voxel of that label second (rare labels are not drowned).

    Shape:
        seg ``(Z, Y, X)`` -> ``(N, 4)`` int32 rows ``(label, z, y, x)``, labels ascending.
    """
    rows = [np.zeros((0, 4), np.int32)]
    for label in np.unique(seg):
        if label == 0:
            continue
        coords = foreground_coordinates(seg == label, rng)
        rows.append(np.concatenate([np.full((len(coords), 1), label, np.int32), coords], 1))
    return np.concatenate(rows).astype(np.int32)


# One .npy per array, so training reads patches through memory maps (np.load(mmap_mode))
# and a dataset larger than RAM trains. CASE.json is written last: it marks a complete case.
ARRAY_NAMES = ("data", "seg", "cls_data", "cls_seg", "fg_locations")


def case_array_path(out_dir: Path, case_id: str, name: str) -> Path:
    """``out_dir/CASE/NAME.npy``: where array ``name`` of a preprocessed case lives."""
    return Path(out_dir) / case_id / f"{name}.npy"


def _save_npy(array: np.ndarray, path: Path) -> None:
    atomic_write(path, lambda fh: np.save(fh, np.ascontiguousarray(array)), binary=True)


def save_preprocessed(case: PreprocessedCase, out_dir: Path, seed: int = 0) -> None:
    """Write ``CASE/{data,cls_data[,seg,cls_seg,fg_locations]}.npy`` (arrays) and, last,
    ``CASE.json`` (case_id, geometry, crop box, diagnosis, has_label, shape).

    ``fg_locations`` are the case's own, or drawn from ``seg`` with ``seed`` when None.
    """
    check_case_name(case.case_id, out_dir)  # a name like "../x" must not leave out_dir
    arrays = {"data": case.data, "cls_data": case.cls_data}
    if case.cls_seg is not None:
        arrays["cls_seg"] = case.cls_seg
    if case.seg is not None:
        arrays["seg"] = case.seg
        arrays["fg_locations"] = (
            case.fg_locations
            if case.fg_locations is not None
            else foreground_locations(case.seg, np.random.default_rng(seed))
        )
    # Temp files of a run killed mid-case: this case's folder has one writer, this call.
    remove_stale_temp_files(Path(out_dir) / case.case_id)
    for name in ARRAY_NAMES:  # a re-run must not leave a stale mask of an earlier run
        path = case_array_path(out_dir, case.case_id, name)
        if name in arrays:
            _save_npy(arrays[name], path)
        else:
            path.unlink(missing_ok=True)
    write_json(
        {
            "case_id": case.case_id,
            "geometry": case.geometry.to_dict(),
            "bbox": [list(b) for b in case.bbox],
            "diagnosis": case.diagnosis,
            "has_label": case.seg is not None,
            "shape": list(case.data.shape[1:]),
        },
        out_dir / f"{case.case_id}.json",
    )


def list_preprocessed(out_dir: Path) -> list[str]:
    """Sorted ids of the complete preprocessed cases in ``out_dir`` (those with a CASE.json)."""
    return sorted(p.stem for p in Path(out_dir).glob("*.json"))


def _load_legacy_npz(path: Path) -> dict[str, np.ndarray]:
    """Arrays of a case written by an older autojoint as one ``CASE.npz`` (no memory mapping);
    its label-agnostic ``fg_coords`` become ``fg_locations`` by reading the mask."""
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    coords = arrays.pop("fg_coords", None)
    if coords is not None and "seg" in arrays:
        labels = arrays["seg"][tuple(coords.T)] if len(coords) else np.zeros(0, np.int32)
        arrays["fg_locations"] = np.concatenate(
            [labels.astype(np.int32)[:, None], coords.astype(np.int32)], 1
        )
    return arrays


_LEGACY_REPORTED: set[Path] = set()  # directories already reported, to log once


def load_preprocessed(
    out_dir: Path, case_id: str, *, mmap_mode: str | None = None
) -> PreprocessedCase:
    """Read back one case :func:`save_preprocessed` wrote.

    Args:
        mmap_mode: None reads the arrays into memory (writable); ``"r"`` memory-maps them
            read-only (``np.memmap``), so the training loader touches only the patch it
            crops. Cases in the older single-file ``CASE.npz`` format still load (into
            memory; a log line suggests re-running autojoint_plan to get memory mapping).

    Raises:
        FileNotFoundError: the case (its JSON or arrays) is missing.
        ValueError: ``CASE.json`` lacks a key or holds one of the wrong type.
    """
    out_dir = Path(out_dir)
    props_path = out_dir / f"{case_id}.json"
    props = read_json(props_path)
    if (out_dir / case_id).is_dir():
        arrays = {
            name: np.load(path, mmap_mode=mmap_mode)  # type: ignore[arg-type]
            for name in ARRAY_NAMES
            if (path := case_array_path(out_dir, case_id, name)).is_file()
        }
        if "data" not in arrays:
            raise FileNotFoundError(
                f"{case_array_path(out_dir, case_id, 'data')}: missing; re-run autojoint_plan "
                "to preprocess this case again."
            )
    elif (legacy := out_dir / f"{case_id}.npz").is_file():
        if mmap_mode is not None and out_dir not in _LEGACY_REPORTED:
            _LEGACY_REPORTED.add(out_dir)
            logger.warning(
                "%s: old single-file format, read into memory; re-run autojoint_plan to store "
                "memory-mappable .npy arrays",
                legacy,
            )
        arrays = _load_legacy_npz(legacy)
    else:
        raise FileNotFoundError(
            f"{out_dir / case_id}: no preprocessed arrays for case '{case_id}'; re-run "
            "autojoint_plan to preprocess the dataset."
        )
    found = {name: arrays.get(name) for name in ARRAY_NAMES}  # None where absent
    record = {**props, **found} if isinstance(props, dict) else props
    problems = field_problems(PreprocessedCase, record)
    if problems:
        raise ValueError(
            f"{props_path}: {'; '.join(problems)}: not the description autojoint_plan writes "
            "of a preprocessed case; re-run autojoint_plan to preprocess the case again."
        )
    return from_json(PreprocessedCase, record)


def _preprocess_one(case: RawCase, plan: Plan, out_dir: Path, seed: int) -> str:
    data, geo = load_channels(case.image_paths)
    seg = load_label(case.label_path, geo, plan.num_labels) if case.label_path else None
    pre = preprocess_arrays(case.case_id, data, geo, seg, plan, case.diagnosis)
    save_preprocessed(pre, out_dir, seed)
    return case.case_id


def limit_blas_threads(threads: int) -> None:
    """Cap this process's BLAS threads: resampling runs as BLAS matrix products, and every
    worker's BLAS would otherwise start one thread per core, ``num_workers`` x cores in all."""
    threadpool_limits(limits=threads, user_api="blas")


def preprocess_dataset(
    dataset: RawDataset, plan: Plan, out_dir: Path, *, num_workers: int = 1
) -> None:
    """Preprocess every case of ``dataset`` into ``out_dir`` (parallel over cases)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    n = len(dataset.cases)
    args = (dataset.cases, [plan] * n, [out_dir] * n, range(n))
    if num_workers > 1:
        threads = max(1, len(os.sched_getaffinity(0)) // num_workers)
        with ProcessPoolExecutor(
            num_workers, initializer=limit_blas_threads, initargs=(threads,)
        ) as pool:
            for _ in tqdm(
                pool.map(_preprocess_one, *args), total=n, desc="preprocess", unit="case"
            ):
                pass
    else:
        for a in tqdm(list(zip(*args, strict=True)), desc="preprocess", unit="case"):
            _preprocess_one(*a)
