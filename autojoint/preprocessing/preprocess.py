"""Preprocess cases as the plan says: crop to body, normalise, resample, build the views.

Each case yields two views of one scan:
  * the full-resolution volume at the plan's target spacing (segmentation patches);
  * the whole-scan classification view, the cropped scan resized to the plan's fixed
    ``classification_shape`` (in the spirit of DeepSC-COVID's equidistant slices), so the
    diagnosis sees every lesion at once.
"""

from __future__ import annotations

import io
import logging
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from autojoint.fingerprint.compute import is_ct
from autojoint.io.case_loading import load_channels, load_label
from autojoint.io.dataset import RawCase, RawDataset
from autojoint.io.files import atomic_write, read_json, write_json
from autojoint.io.image_io import ImageGeometry
from autojoint.io.paths import check_case_name
from autojoint.planning.schema import Plan
from autojoint.preprocessing.cropping import BBox, bbox_of, body_mask, crop
from autojoint.preprocessing.lung_mask import lung_crop
from autojoint.preprocessing.normalization import normalize
from autojoint.preprocessing.resample import resample_image, resample_label, shape_for_spacing

logger = logging.getLogger(__name__)

MAX_FOREGROUND_SAMPLES = 10_000


@dataclass(frozen=True)
class PreprocessedCase:
    """Arrays of one preprocessed case and what is needed to map results back.

    Shape:
        data: ``(C, Z, Y, X)`` at target spacing; seg: ``(Z, Y, X)`` or None;
        cls_data: ``(C, *classification_shape)``; cls_seg: ``classification_shape`` or None.
    """

    case_id: str
    data: np.ndarray
    seg: np.ndarray | None
    cls_data: np.ndarray
    cls_seg: np.ndarray | None
    geometry: ImageGeometry
    bbox: BBox
    diagnosis: str | None


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
    data_r = resample_image(data_c, new_shape)
    seg_r = resample_label(seg_c, new_shape, plan.num_seg_classes) if seg_c is not None else None
    if plan.has_diagnosis:
        cls_data = resample_image(data_c, plan.classification_shape, order=1)
        cls_seg = (
            resample_label(seg_c, plan.classification_shape, plan.num_seg_classes)
            if seg_c is not None
            else None
        )
    else:
        cls_data, cls_seg = np.zeros((data.shape[0], 1, 1, 1), np.float32), None
    return PreprocessedCase(case_id, data_r, seg_r, cls_data, cls_seg, geometry, bbox, diagnosis)


def foreground_coordinates(seg: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Up to 10,000 lesion voxel coordinates ``(N, 3)`` for foreground oversampling."""
    coords = np.argwhere(seg > 0)
    if len(coords) > MAX_FOREGROUND_SAMPLES:
        coords = coords[rng.choice(len(coords), MAX_FOREGROUND_SAMPLES, replace=False)]
    return coords.astype(np.int32)


def save_preprocessed(case: PreprocessedCase, out_dir: Path, seed: int = 0) -> None:
    """Write ``CASE.npz`` (arrays) and ``CASE.json`` (geometry, crop box, diagnosis)."""
    check_case_name(case.case_id, out_dir)  # a name like "../x" must not leave out_dir
    arrays = {"data": case.data, "cls_data": case.cls_data}
    if case.cls_seg is not None:
        arrays["cls_seg"] = case.cls_seg
    if case.seg is not None:
        arrays["seg"] = case.seg
        arrays["fg_coords"] = foreground_coordinates(case.seg, np.random.default_rng(seed))
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    atomic_write(out_dir / f"{case.case_id}.npz", lambda fh: fh.write(buf.getvalue()), binary=True)
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


def load_preprocessed(out_dir: Path, case_id: str) -> dict:
    """Load one preprocessed case as a dict of arrays plus its properties."""
    props = read_json(out_dir / f"{case_id}.json")
    with np.load(out_dir / f"{case_id}.npz") as f:
        arrays = {k: f[k] for k in f.files}
    return {**arrays, "properties": props}


def _preprocess_one(case: RawCase, plan: Plan, out_dir: Path, seed: int) -> str:
    data, geo = load_channels(case.image_paths)
    seg = load_label(case.label_path, geo, plan.num_seg_classes) if case.label_path else None
    pre = preprocess_arrays(case.case_id, data, geo, seg, plan, case.diagnosis)
    save_preprocessed(pre, out_dir, seed)
    return case.case_id


def preprocess_dataset(
    dataset: RawDataset, plan: Plan, out_dir: Path, *, num_workers: int = 1
) -> None:
    """Preprocess every case of ``dataset`` into ``out_dir`` (parallel over cases)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    n = len(dataset.cases)
    args = (dataset.cases, [plan] * n, [out_dir] * n, range(n))
    if num_workers > 1:
        with ProcessPoolExecutor(num_workers) as pool:
            for _ in tqdm(
                pool.map(_preprocess_one, *args), total=n, desc="preprocess", unit="case"
            ):
                pass
    else:
        for a in tqdm(list(zip(*args, strict=True)), desc="preprocess", unit="case"):
            _preprocess_one(*a)
