"""Preprocessed cases with known voxel values, shared by the loader and augmentation tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autojoint.io.files import write_json
from autojoint.preprocessing.preprocess import foreground_locations

SHAPE = (10, 20, 20)


def write_case_properties(
    root: Path, case_id: str, diagnosis: str | None, shape: tuple[int, ...] = SHAPE
) -> None:
    """``CASE.json`` as autojoint_plan has always written it (geometry without ``is_2d``
    as before 2D support; the crop box covering the whole case)."""
    geometry = {
        "shape": list(shape),
        "spacing": [1.0, 1.0, 1.0],
        "origin": [0.0, 0.0, 0.0],
        "direction": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
    }
    props = {
        "case_id": case_id,
        "geometry": geometry,
        "bbox": [[0, n] for n in shape],
        "diagnosis": diagnosis,
        "has_label": True,
        "shape": list(shape),
    }
    write_json(props, root / f"{case_id}.json")


def write_coordinate_case(root: Path, case_id: str, shape: tuple[int, int, int]) -> np.ndarray:
    """A case whose channel ``a`` holds each voxel's index along axis ``a``, its view the
    case itself (so a box crops the view on voxel centres), one lesion voxel."""
    data = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"))
    data = data.astype(np.float32)
    seg = np.zeros(shape, np.uint8)
    seg[shape[0] - 2, 1, shape[2] - 2] = 1  # near a corner: the lesion patch is clipped
    case = root / case_id
    case.mkdir(parents=True)
    np.save(case / "data.npy", data)
    np.save(case / "cls_data.npy", data)
    np.save(case / "seg.npy", seg)
    np.save(case / "cls_seg.npy", seg)
    np.save(case / "fg_locations.npy", foreground_locations(seg, np.random.default_rng(0)))
    write_case_properties(root, case_id, "CAP", shape)
    return data
