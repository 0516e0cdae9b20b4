"""Cropping, resampling, normalisation and the whole in-memory preprocessing of one case."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from autojoint.arrays.cropping import CT_AIR_THRESHOLD_HU, bbox_of, body_mask, crop, uncrop
from autojoint.fingerprint.compute import lesion_stats
from autojoint.fingerprint.schema import CaseFingerprint, Fingerprint, IntensityStats
from autojoint.io.image_io import ImageGeometry
from autojoint.planning.planner import plan_experiment
from autojoint.planning.schema import ChannelNormalization
from autojoint.preprocessing.normalization import normalize
from autojoint.preprocessing.preprocess import (
    MAX_FOREGROUND_SAMPLES,
    PreprocessedCase,
    foreground_coordinates,
    foreground_locations,
    load_preprocessed,
    preprocess_arrays,
    save_preprocessed,
)
from autojoint.preprocessing.resample import (
    resample_image,
    resample_label,
    shape_for_spacing,
)
from tests.synthetic import make_case

# --- cropping -------------------------------------------------------------------------------


def test_bbox_of_known_answer() -> None:
    mask = np.zeros((6, 7, 8), bool)
    mask[2, 3, 1] = True
    mask[4, 5, 6] = True
    assert bbox_of(mask) == ((2, 5), (3, 6), (1, 7))


def test_bbox_of_empty_mask_is_whole_array() -> None:
    assert bbox_of(np.zeros((3, 4, 5), bool)) == ((0, 3), (0, 4), (0, 5))


def test_body_mask_ct_threshold_and_nonzero() -> None:
    data = np.full((2, 3, 4, 5), -1000.0, np.float32)
    data[0, 1, 2, 3] = CT_AIR_THRESHOLD_HU + 1  # body in channel 0
    data[1, 0, 0, 0] = CT_AIR_THRESHOLD_HU  # exactly the threshold: still air
    m = body_mask(data, is_ct=True)
    assert m.shape == (3, 4, 5)
    assert m.sum() == 1 and m[1, 2, 3]
    nz = body_mask(np.where(data > -999, 1.0, 0.0), is_ct=False)
    assert nz.sum() == 2 and nz[1, 2, 3] and nz[0, 0, 0]


@pytest.mark.parametrize("seed", range(8))
def test_crop_uncrop_round_trip(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = tuple(int(v) for v in rng.integers(3, 12, size=3))
    x = rng.normal(size=(2, *shape)).astype(np.float32)
    mask = rng.random(shape) < 0.02
    mask[tuple(int(rng.integers(s)) for s in shape)] = True  # never empty
    box = bbox_of(mask)
    # The box is tight: every mask voxel lies inside, and each face touches one.
    coords = np.argwhere(mask)
    np.testing.assert_array_equal(coords.min(0), [b[0] for b in box])
    np.testing.assert_array_equal(coords.max(0) + 1, [b[1] for b in box])

    c = crop(x, box)
    assert c.shape == (2, *(b - a for a, b in box))
    fill = -7.5
    back = uncrop(c, box, shape, fill=fill)
    assert back.shape == x.shape and back.dtype == x.dtype
    inside = np.zeros(shape, bool)
    inside[tuple(slice(a, b) for a, b in box)] = True
    np.testing.assert_array_equal(back[:, inside], x[:, inside])
    assert np.all(back[:, ~inside] == fill)
    # Label maps (no channel axis) round trip too.
    lab = (x[0] > 0).astype(np.uint8)
    np.testing.assert_array_equal(uncrop(crop(lab, box), box, shape)[inside], lab[inside])


# --- resampling -----------------------------------------------------------------------------


def test_shape_for_spacing_known_answer() -> None:
    assert shape_for_spacing((10, 100, 101), (3.0, 0.8, 0.8), (1.5, 1.6, 1.0)) == (20, 50, 81)
    assert shape_for_spacing((1, 2, 3), (1.0, 1.0, 1.0), (10.0, 10.0, 10.0)) == (1, 1, 1)


def _smooth(shape: tuple[int, int, int]) -> np.ndarray:
    z, y, x = (np.linspace(0, 1, s) for s in shape)
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    return (np.sin(2 * zz) + np.cos(3 * yy) * xx + 0.5 * yy**2)[None].astype(np.float32)


def test_resample_image_there_and_back_is_near_identity() -> None:
    vol = _smooth((12, 32, 32))
    up = resample_image(vol, (20, 48, 40))
    assert up.shape == (1, 20, 48, 40) and up.dtype == np.float32
    back = resample_image(up, (12, 32, 32))
    assert back.shape == vol.shape
    err = np.abs(back - vol)
    assert err.max() < 0.05 * float(vol.max() - vol.min())
    assert err.mean() < 0.005 * float(vol.max() - vol.min())


def test_resample_image_same_shape_is_exact_copy() -> None:
    vol = _smooth((4, 5, 6)).astype(np.float64)
    out = resample_image(vol, (4, 5, 6))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, vol.astype(np.float32))
    assert not np.shares_memory(out, vol)


def test_resample_image_preserves_constant_and_channels() -> None:
    vol = np.stack([np.full((6, 8, 8), -3.0), np.full((6, 8, 8), 5.0)]).astype(np.float32)
    out = resample_image(vol, (3, 11, 5))
    assert out.shape == (2, 3, 11, 5)
    np.testing.assert_allclose(out[0], -3.0, atol=1e-5)
    np.testing.assert_allclose(out[1], 5.0, atol=1e-5)


def _blobs(shape=(16, 32, 32)) -> np.ndarray:
    z, y, x = np.indices(shape)
    seg = np.zeros(shape, np.uint8)
    seg[((z - 5) / 3.5) ** 2 + ((y - 10) / 6) ** 2 + ((x - 10) / 6) ** 2 < 1] = 1
    seg[((z - 10) / 4) ** 2 + ((y - 21) / 7) ** 2 + ((x - 20) / 8) ** 2 < 1] = 2
    return seg


@pytest.mark.parametrize("new_shape", [(24, 40, 28), (10, 24, 24), (16, 48, 20)])
def test_resample_label_keeps_values_and_volumes(new_shape: tuple[int, int, int]) -> None:
    seg = _blobs()
    out = resample_label(seg, new_shape, 3)
    assert out.shape == new_shape and out.dtype == np.uint8
    assert set(np.unique(out).tolist()) == {0, 1, 2}
    scale = np.prod(seg.shape) / np.prod(new_shape)  # old voxels per new voxel
    for v in (1, 2):
        old, new = (seg == v).sum(), (out == v).sum() * scale
        assert abs(new - old) / old < 0.10, (v, old, new)


def test_resample_label_never_invents_values() -> None:
    rng = np.random.default_rng(3)
    # Labels 0 and 2 only, interleaved: a naive linear interpolation would produce 1s.
    seg = np.where(rng.random((6, 9, 9)) < 0.5, 0, 2).astype(np.uint8)
    for shape in [(11, 5, 14), (3, 18, 7)]:
        out = resample_label(seg, shape, 3)
        assert set(np.unique(out).tolist()) <= {0, 2}


def test_resample_label_identity_when_shape_unchanged() -> None:
    seg = _blobs((5, 6, 7))
    out = resample_label(seg.astype(np.int64), seg.shape, 3)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, seg)


# --- normalisation --------------------------------------------------------------------------


def test_normalize_ct_known_answer() -> None:
    data = np.array([-2000.0, -1000.0, 0.0, 100.0, 3000.0], np.float32).reshape(1, 1, 1, 5)
    scheme = ChannelNormalization("ct", clip_low=-1000.0, clip_high=500.0, mean=-200.0, std=400.0)
    out = normalize(data, [scheme])
    expected = np.array([-2.0, -2.0, 0.5, 0.75, 1.75], np.float32).reshape(1, 1, 1, 5)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert data[0, 0, 0, 0] == -2000.0  # input untouched


def test_normalize_zscore_and_mixed_channels() -> None:
    rng = np.random.default_rng(1)
    data = np.stack([rng.normal(40, 9, (4, 6, 8)), rng.normal(-300, 50, (4, 6, 8))]).astype(
        np.float32
    )
    schemes = [
        ChannelNormalization("zscore", 0.0, 0.0, 0.0, 1.0),
        ChannelNormalization("ct", -1000.0, 1000.0, -300.0, 50.0),
    ]
    out = normalize(data, schemes)
    assert out[0].mean() == pytest.approx(0.0, abs=1e-5)
    assert out[0].std() == pytest.approx(1.0, abs=1e-4)
    np.testing.assert_allclose(out[1], (data[1] + 300.0) / 50.0, rtol=1e-5, atol=1e-5)


def test_normalize_zscore_constant_image_is_finite() -> None:
    out = normalize(
        np.full((1, 2, 2, 2), 7.0, np.float32), [ChannelNormalization("zscore", 0, 0, 0, 1)]
    )
    np.testing.assert_array_equal(out, 0.0)


def test_normalize_errors() -> None:
    s = ChannelNormalization("ct", -1.0, 1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="2 channels but the plan has 1"):
        normalize(np.zeros((2, 1, 1, 1), np.float32), [s])
    with pytest.raises(ValueError, match="unknown normalisation scheme 'minmax'"):
        normalize(np.zeros((1, 1, 1, 1), np.float32), [dataclasses.replace(s, scheme="minmax")])


# --- whole case -----------------------------------------------------------------------------


def _tiny_fingerprint(
    spacing=(2.5, 0.8, 0.8), shape=(12, 32, 32), classes=("COVID-19", "CAP", "normal")
) -> Fingerprint:
    cases = tuple(
        CaseFingerprint(
            f"c{i}",
            shape,
            shape,
            spacing,
            (1, 0, 0, 0, 1, 0, 0, 0, 1),
            True,
            classes[i % len(classes)] if classes else None,
            {"ground_glass": 0.01, "consolidation": 0.0},
            {"ground_glass": [300.0], "consolidation": [], "lesion": [300.0]},
        )
        for i in range(4)
    )
    labels = {"background": 0, "ground_glass": 1, "consolidation": 2}
    return Fingerprint(
        channel_names={"0": "CT"},
        labels=labels,
        classes=tuple(classes),
        cases=cases,
        intensity=(IntensityStats(-500.0, 300.0, -600.0, -1000.0, 200.0, -1000.0, 100.0),),
        diagnosis_counts={c: sum(1 for x in cases if x.diagnosis == c) for c in classes},
        num_cases_without_label=0,
        num_cases_without_diagnosis=0,
        lesion_stats=lesion_stats(cases, labels),
    )


@pytest.mark.parametrize("with_classes", [True, False])
def test_preprocess_arrays_shapes_follow_the_plan(with_classes: bool) -> None:
    fp = _tiny_fingerprint(classes=("COVID-19", "CAP", "normal") if with_classes else ())
    plan = plan_experiment(
        fp, memory_budget_gb=0.05, device_profile="cpu", base_features=4, max_features=16
    )
    img, seg = make_case(np.random.default_rng(0), "COVID-19", (10, 36, 36))
    spacing = (3.0, 0.7, 0.7)
    geo = ImageGeometry((10, 36, 36), spacing, (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    data = img[None].astype(np.float32)
    pre = preprocess_arrays("x", data, geo, seg, plan, "COVID-19")

    box = bbox_of(body_mask(data, is_ct=True))
    assert pre.bbox == box
    cropped = tuple(b - a for a, b in box)
    assert cropped != (10, 36, 36)  # the air border was really cropped
    expected = shape_for_spacing(cropped, spacing, plan.target_spacing)
    assert pre.data.shape == (1, *expected) and pre.data.dtype == np.float32
    assert pre.seg is not None and pre.seg.shape == expected and pre.seg.dtype == np.uint8
    assert set(np.unique(pre.seg).tolist()) <= {0, 1, 2} and (pre.seg == 1).any()
    assert pre.geometry == geo and pre.diagnosis == "COVID-19" and pre.case_id == "x"
    if with_classes:
        assert pre.cls_data.shape == (1, *plan.classification_shape)
        assert pre.cls_seg is not None and pre.cls_seg.shape == plan.classification_shape
    else:
        assert pre.cls_data.shape == (1, 1, 1, 1) and pre.cls_seg is None
    # Normalised with the plan's CT scheme: the clipped air maps to (clip_low - mean) / std.
    n = plan.normalization[0]
    assert pre.data.min() >= (n.clip_low - n.mean) / n.std - 0.2
    assert pre.data.max() <= (n.clip_high - n.mean) / n.std + 0.2


def test_preprocess_arrays_without_mask() -> None:
    plan = plan_experiment(
        _tiny_fingerprint(),
        memory_budget_gb=0.05,
        device_profile="cpu",
        base_features=4,
        max_features=16,
    )
    img, _ = make_case(np.random.default_rng(1), "normal", (8, 24, 24))
    geo = ImageGeometry(
        (8, 24, 24), plan.target_spacing, (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1)
    )
    pre = preprocess_arrays("y", img[None].astype(np.float32), geo, None, plan)
    assert pre.seg is None and pre.cls_seg is None and pre.diagnosis is None
    cropped = tuple(b - a for a, b in pre.bbox)
    assert pre.data.shape[1:] == cropped  # already at target spacing: no resampling


def test_foreground_coordinates_are_lesion_voxels_and_capped() -> None:
    rng = np.random.default_rng(0)
    seg = np.zeros((30, 30, 30), np.uint8)
    seg[2:27, 2:27, 2:27] = 1  # 15,625 voxels > cap
    coords = foreground_coordinates(seg, rng)
    assert coords.shape == (MAX_FOREGROUND_SAMPLES, 3) and coords.dtype == np.int32
    assert np.all(seg[tuple(coords.T)] == 1)
    assert len(np.unique(coords, axis=0)) == MAX_FOREGROUND_SAMPLES
    small = np.zeros((4, 4, 4), np.uint8)
    small[1, 2, 3] = 2
    np.testing.assert_array_equal(foreground_coordinates(small, rng), [[1, 2, 3]])
    assert foreground_coordinates(np.zeros((2, 2, 2), np.uint8), rng).shape == (0, 3)


# --- the preprocessed case on disk ----------------------------------------------------------


def _assert_same_case(a: PreprocessedCase, b: PreprocessedCase) -> None:
    for f in dataclasses.fields(PreprocessedCase):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            assert x is not None and y is not None, f.name
            np.testing.assert_array_equal(x, y, err_msg=f.name)
            assert x.dtype == y.dtype, f.name
        else:
            assert x == y, f.name


@pytest.mark.parametrize("with_mask", [True, False])
def test_saved_case_loads_as_the_same_record(tmp_path: Path, with_mask: bool) -> None:
    plan = plan_experiment(
        _tiny_fingerprint(), memory_budget_gb=0.05, device_profile="cpu", base_features=4
    )
    img, seg = make_case(np.random.default_rng(0), "CAP", (10, 36, 36))
    geo = ImageGeometry((10, 36, 36), (3.0, 0.7, 0.7), (1.0, 2.0, 3.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    pre = preprocess_arrays(
        "x", img[None].astype(np.float32), geo, seg if with_mask else None, plan, "CAP"
    )
    assert pre.fg_locations is None
    save_preprocessed(pre, tmp_path, seed=4)
    for mmap_mode in (None, "r"):
        loaded = load_preprocessed(tmp_path, "x", mmap_mode=mmap_mode)
        assert isinstance(loaded.bbox[0], tuple) and isinstance(loaded.geometry, ImageGeometry)
        drawn = foreground_locations(pre.seg, np.random.default_rng(4)) if with_mask else None
        _assert_same_case(loaded, dataclasses.replace(pre, fg_locations=drawn))
    # A record that carries its foreground locations keeps them.
    save_preprocessed(loaded, tmp_path / "again", seed=5)
    _assert_same_case(load_preprocessed(tmp_path / "again", "x"), loaded)


def test_damaged_case_description_is_refused_naming_the_file(tmp_path: Path) -> None:
    arr = np.zeros((1, 2, 2, 2), np.float32)
    geo = ImageGeometry((2, 2, 2), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    save_preprocessed(
        PreprocessedCase("c", arr, None, arr, None, geo, ((0, 2),) * 3, None), tmp_path
    )
    props = json.loads((tmp_path / "c.json").read_text(encoding="utf-8"))
    (tmp_path / "c.json").write_text(json.dumps({**props, "bbox": "all"}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"c.json: 'bbox' must be a list.*re-run autojoint_plan"):
        load_preprocessed(tmp_path, "c")
    del props["geometry"]
    (tmp_path / "c.json").write_text(json.dumps(props), encoding="utf-8")
    with pytest.raises(ValueError, match=r"c.json: lacks key 'geometry'"):
        load_preprocessed(tmp_path, "c")
