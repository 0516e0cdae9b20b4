"""Fingerprint computation on tiny real datasets: lesion components and their statistics,
intensity sampling, partial labels, parallel workers, errors, and the JSON round trip."""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from autojoint.fingerprint.compute import (
    component_volumes,
    compute_fingerprint,
    equivalent_diameter,
    lesion_names,
)
from autojoint.fingerprint.schema import PERCENTILES, Fingerprint
from autojoint.io.dataset import DatasetError, load_raw_dataset
from autojoint.io.image_io import SLICE_SPACING_2D_MM, ImageReadError
from tests.fingerprints import nan_equal
from tests.synthetic import make_raw_dataset, make_raw_dataset_2d, write_volume

SPACING = (2.5, 0.8, 0.8)
VOXEL_MM3 = 2.5 * 0.8 * 0.8
LABELS = {"background": 0, "ground_glass": 1, "consolidation": 2, "effusion": 3}
SHAPE = (8, 12, 12)


def _write_dataset(
    root: Path,
    cases: dict[str, tuple[np.ndarray, np.ndarray | None]],
    labels: dict[str, int] = LABELS,
) -> Path:
    """A plain raw dataset (no diagnoses) from explicit image and mask arrays."""
    for case_id, (image, mask) in cases.items():
        write_volume(image.astype(np.int16), root / "imagesTr" / f"{case_id}_0000.nii.gz", SPACING)
        if mask is not None:
            write_volume(mask.astype(np.uint8), root / "labelsTr" / f"{case_id}.nii.gz", SPACING)
    meta = {
        "channel_names": {"0": "CT"},
        "labels": labels,
        "numTraining": len(cases),
        "file_ending": ".nii.gz",
    }
    (root / "dataset.json").write_text(json.dumps(meta), encoding="utf-8")
    return root


def _known_mask() -> np.ndarray:
    """ground_glass: an 18-voxel box and a corner-touching voxel pair (one component under
    26-connectivity); consolidation: a 12-voxel box sharing a face with the ground-glass box,
    and a lone voxel. Together: components of 30, 2 and 1 voxels."""
    mask = np.zeros(SHAPE, np.uint8)
    mask[1:3, 1:4, 1:4] = 1  # 2 x 3 x 3
    mask[5, 8, 8] = mask[6, 9, 9] = 1
    mask[1:3, 1:4, 4:6] = 2  # 2 x 3 x 2, touches the box above along x
    mask[6, 1, 10] = 2
    return mask


def _body() -> np.ndarray:
    return np.full(SHAPE, 40, np.int16)


@pytest.fixture
def known(tmp_path: Path) -> Fingerprint:
    """Three cases: the known mask, an empty mask, and no mask at all."""
    root = _write_dataset(
        tmp_path / "raw",
        {
            "a_lesions": (_body(), _known_mask()),
            "b_empty": (_body(), np.zeros(SHAPE, np.uint8)),
            "c_nomask": (_body(), None),
        },
    )
    return compute_fingerprint(load_raw_dataset(root))


# --- per case ------------------------------------------------------------------------------


def test_component_volumes_26_connected() -> None:
    mask = _known_mask()
    assert component_volumes(mask == 1, SPACING) == pytest.approx([18 * VOXEL_MM3, 2 * VOXEL_MM3])
    assert component_volumes(mask > 0, SPACING) == pytest.approx(
        [30 * VOXEL_MM3, 2 * VOXEL_MM3, VOXEL_MM3]
    )
    assert component_volumes(np.zeros(SHAPE, bool), SPACING) == []


def test_equivalent_diameter_of_a_sphere() -> None:
    d = np.array([1.0, 10.0, 37.5])
    assert equivalent_diameter(math.pi / 6 * d**3) == pytest.approx(d)


def test_case_lesion_components(known: Fingerprint) -> None:
    a, b, c = known.cases
    assert list(a.lesion_components) == ["ground_glass", "consolidation", "effusion", "lesion"]
    assert a.lesion_components["ground_glass"] == pytest.approx([18 * VOXEL_MM3, 2 * VOXEL_MM3])
    assert a.lesion_components["consolidation"] == pytest.approx([12 * VOXEL_MM3, VOXEL_MM3])
    assert a.lesion_components["effusion"] == []
    assert a.lesion_components["lesion"] == pytest.approx(
        [30 * VOXEL_MM3, 2 * VOXEL_MM3, VOXEL_MM3]
    )
    n = math.prod(SHAPE)
    assert a.label_voxel_fraction == pytest.approx(
        {"ground_glass": 20 / n, "consolidation": 13 / n, "effusion": 0.0}
    )
    assert b.has_label and b.lesion_components == {name: [] for name in a.lesion_components}
    assert b.label_voxel_fraction == {"ground_glass": 0.0, "consolidation": 0.0, "effusion": 0.0}
    assert not c.has_label and c.lesion_components == {}
    assert all(math.isnan(f) for f in c.label_voxel_fraction.values())


# --- dataset level ---------------------------------------------------------------------------


def test_lesion_stats(known: Fingerprint) -> None:
    stats = known.lesion_stats
    assert list(stats) == ["ground_glass", "consolidation", "effusion", "lesion"]
    n = math.prod(SHAPE)

    union = stats["lesion"]
    assert (union.num_cases_with_mask, union.num_cases_with_label) == (2, 1)
    assert union.mean_voxel_fraction == pytest.approx((33 / n + 0.0) / 2)
    assert (union.components_per_case_mean, union.components_per_case_median) == (1.5, 1.5)
    volumes = np.array([30, 2, 1]) * VOXEL_MM3
    assert list(union.volume_mm3_percentiles) == ["p05", "p25", "p50", "p75", "p95"]
    assert union.volume_mm3_percentiles["p50"] == pytest.approx(2 * VOXEL_MM3)
    assert union.volume_mm3_percentiles == pytest.approx(
        {k: float(np.percentile(volumes, q)) for k, q in PERCENTILES.items()}
    )
    assert union.equivalent_diameter_mm_percentiles["p50"] == pytest.approx(
        (6 * 2 * VOXEL_MM3 / math.pi) ** (1 / 3)
    )
    assert union.equivalent_diameter_mm_percentiles["p95"] < (6 * 30 * VOXEL_MM3 / math.pi) ** (
        1 / 3
    )

    gg = stats["ground_glass"]
    assert (gg.num_cases_with_mask, gg.num_cases_with_label) == (2, 1)
    assert gg.mean_voxel_fraction == pytest.approx(10 / n)
    assert (gg.components_per_case_mean, gg.components_per_case_median) == (1.0, 1.0)
    assert gg.volume_mm3_percentiles["p05"] == pytest.approx(VOXEL_MM3 * (2 + 0.05 * 16))

    # A declared label that never occurs: counts are zero, sizes undefined (NaN).
    eff = stats["effusion"]
    assert (eff.num_cases_with_mask, eff.num_cases_with_label) == (2, 0)
    assert (eff.mean_voxel_fraction, eff.components_per_case_mean) == (0.0, 0.0)
    assert all(math.isnan(v) for v in eff.volume_mm3_percentiles.values())
    assert all(math.isnan(v) for v in eff.equivalent_diameter_mm_percentiles.values())
    assert known.num_cases_without_label == 1


def test_no_masks_at_all(tmp_path: Path) -> None:
    root = make_raw_dataset(tmp_path / "raw", num_cases=3)
    shutil.rmtree(root / "labelsTr")  # diagnoses only
    fp = compute_fingerprint(load_raw_dataset(root))
    assert fp.num_cases_without_label == 3
    assert all(c.lesion_components == {} for c in fp.cases)
    assert list(fp.lesion_stats) == ["ground_glass", "consolidation", "lesion"]
    for s in fp.lesion_stats.values():
        assert (s.num_cases_with_mask, s.num_cases_with_label) == (0, 0)
        floats = [s.mean_voxel_fraction, s.components_per_case_mean, s.components_per_case_median]
        floats += [
            *s.volume_mm3_percentiles.values(),
            *s.equivalent_diameter_mm_percentiles.values(),
        ]
        assert all(math.isnan(v) for v in floats)


def test_plain_dataset_without_diagnoses(tmp_path: Path) -> None:
    root = make_raw_dataset(tmp_path / "raw", num_cases=6, with_diagnoses=False)
    fp = compute_fingerprint(load_raw_dataset(root))
    assert fp.classes == () and fp.diagnosis_counts == {}
    assert fp.num_cases_without_diagnosis == 6 and fp.num_cases_without_label == 0
    # make_case: COVID-19 cases (0, 3) hold ground glass, CAP cases (1, 4) one consolidation,
    # normal cases (2, 5) nothing.
    assert [len(c.lesion_components["consolidation"]) for c in fp.cases] == [0, 1, 0, 0, 1, 0]
    assert [bool(c.lesion_components["ground_glass"]) for c in fp.cases] == [1, 0, 0, 1, 0, 0]
    assert fp.lesion_stats["consolidation"].num_cases_with_label == 2
    assert fp.lesion_stats["lesion"].num_cases_with_label == 4
    assert fp.lesion_stats["lesion"].components_per_case_median > 0
    for c in fp.cases:
        scan_mm3 = math.prod(c.shape) * math.prod(c.spacing)
        for name, fraction in c.label_voxel_fraction.items():
            # Lesions lie inside the body crop, so the components hold all labelled voxels.
            assert sum(c.lesion_components[name]) == pytest.approx(fraction * scan_mm3)
        assert sum(c.lesion_components["lesion"]) == pytest.approx(
            sum(c.label_voxel_fraction.values()) * scan_mm3
        )


def test_label_named_lesion(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    mask = _known_mask()
    root = _write_dataset(tmp_path / "raw", {"a": (_body(), (mask > 0).astype(np.uint8))})
    alone = {"background": 0, "lesion": 1}
    (root / "dataset.json").write_text(
        json.dumps({"channel_names": {"0": "CT"}, "labels": alone, "file_ending": ".nii.gz"}),
        encoding="utf-8",
    )
    fp = compute_fingerprint(load_raw_dataset(root))
    assert list(fp.lesion_stats) == ["lesion"]
    assert fp.cases[0].lesion_components["lesion"] == pytest.approx(
        [30 * VOXEL_MM3, 2 * VOXEL_MM3, VOXEL_MM3]
    )
    assert lesion_names({"background": 0, "lesion": 1, "edema": 2}) == ["edema", "lesion"]
    root2 = _write_dataset(
        tmp_path / "raw2", {"a": (_body(), mask)}, {"background": 0, "lesion": 1, "edema": 2}
    )
    with caplog.at_level(logging.WARNING):
        fp2 = compute_fingerprint(load_raw_dataset(root2))
    assert "shares its name with the all-lesions entry" in caplog.text
    assert len(fp2.cases[0].lesion_components["lesion"]) == 3  # the union


# --- intensities -------------------------------------------------------------------------------


def test_intensity_samples_lungs_and_lesions(tmp_path: Path) -> None:
    """Air around the body is not sampled; the lungs inside it (below the -500 HU body
    threshold) are; a small bright lesion is sampled well beyond its share of the body."""
    shape = (10, 42, 42)
    image = np.full(shape, -1000, np.int16)
    image[:, 1:-1, 1:-1] = 40  # body
    image[:, 6:36, 6:36] = -850  # lung, walled in on every slice
    mask = np.zeros(shape, np.uint8)
    mask[3:7, 10:14, 10:14] = 1  # 64 voxels, 0.4% of the body
    image[mask > 0] = 300
    root = _write_dataset(tmp_path / "raw", {"a": (image, mask)})
    stats = compute_fingerprint(load_raw_dataset(root)).intensity[0]
    assert stats.min == -850.0 and stats.percentile_00_5 == -850.0  # lung, not air
    assert stats.max == 300.0 and stats.percentile_99_5 == 300.0  # lesion oversampled
    assert stats.median in (-850.0, 40.0)


def test_intensity_percentile_at_lung_level(tmp_path: Path) -> None:
    fp = compute_fingerprint(load_raw_dataset(make_raw_dataset(tmp_path / "raw")))
    # make_case: lung -850, ground glass -650, tissue 40, consolidation 30, noise sd 15.
    assert -920 < fp.intensity[0].percentile_00_5 < -820
    assert 30 < fp.intensity[0].percentile_99_5 < 100


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    ds = load_raw_dataset(make_raw_dataset(tmp_path / "raw", num_cases=3))
    first = compute_fingerprint(ds, seed=3)
    assert nan_equal(compute_fingerprint(ds, seed=3), first)
    other = compute_fingerprint(ds, seed=4)
    assert other.intensity != first.intensity  # only the voxel sample depends on the seed
    assert nan_equal(other.cases, first.cases)
    assert nan_equal(other.lesion_stats, first.lesion_stats)


# --- workers and errors ------------------------------------------------------------------------


def test_parallel_equals_serial(tmp_path: Path) -> None:
    ds = load_raw_dataset(make_raw_dataset(tmp_path / "raw", num_cases=6))
    serial = compute_fingerprint(ds, num_workers=1)
    assert nan_equal(compute_fingerprint(ds, num_workers=2), serial)
    assert serial == compute_fingerprint(ds, num_workers=2)  # no NaN here: plain == as well


@pytest.mark.parametrize("workers", [1, 2])
def test_corrupt_image_names_the_file(tmp_path: Path, workers: int) -> None:
    root = make_raw_dataset(tmp_path / "raw", num_cases=4)
    bad = root / "imagesTr" / "case_002_0000.nii.gz"
    bad.write_bytes(b"this is not a NIfTI file")
    with pytest.raises(ImageReadError, match=r"case_002_0000\.nii\.gz: cannot be read"):
        compute_fingerprint(load_raw_dataset(root), num_workers=workers)


# --- file round trip -----------------------------------------------------------------------------


def test_save_load_round_trip_with_nan(known: Fingerprint, tmp_path: Path) -> None:
    path = tmp_path / "fingerprint.json"
    known.save(path)
    text = path.read_text(encoding="utf-8")
    assert "NaN" not in text and "null" in text  # strict JSON
    loaded = Fingerprint.load(path)
    assert nan_equal(loaded, known)
    assert known != loaded  # NaN != NaN: why nan_equal exists
    assert math.isnan(loaded.lesion_stats["effusion"].volume_mm3_percentiles["p50"])
    assert math.isnan(loaded.cases[2].label_voxel_fraction["ground_glass"])
    assert isinstance(loaded.cases[0].shape, tuple)
    Fingerprint.load(path).save(tmp_path / "again.json")
    assert (tmp_path / "again.json").read_text(encoding="utf-8") == text


def test_load_refuses_other_versions_and_missing_keys(known: Fingerprint, tmp_path: Path) -> None:
    path = tmp_path / "fingerprint.json"
    known.save(path)
    d = json.loads(path.read_text(encoding="utf-8"))
    d["schema_version"] = 2
    path.write_text(json.dumps(d), encoding="utf-8")
    with pytest.raises(ValueError, match=r"fingerprint.json: fingerprint schema_version 2 is not"):
        Fingerprint.load(path)
    d["schema_version"] = 1
    del d["lesion_stats"]
    path.write_text(json.dumps(d), encoding="utf-8")
    with pytest.raises(ValueError, match=r"fingerprint.json: fingerprint lacks key 'lesion_stats'"):
        Fingerprint.load(path)


def test_equivalent_diameter_of_a_disc() -> None:
    # 2D data: a component of area A (stored as A x the nominal 1 mm slice) -> disc diameter.
    np.testing.assert_allclose(equivalent_diameter(np.array([math.pi * 25.0]), is_2d=True), [10.0])


def test_2d_dataset_fingerprint(tmp_path: Path) -> None:
    raw = make_raw_dataset_2d(tmp_path / "raw", num_cases=3)
    fp = compute_fingerprint(load_raw_dataset(raw))
    assert fp.is_2d and fp.num_dims == 2
    assert all(c.is_2d and c.shape == (1, 40, 40) for c in fp.cases)
    for c in fp.cases:
        np.testing.assert_allclose(c.spacing, (SLICE_SPACING_2D_MM, 0.7, 0.7), rtol=1e-6)
    # Component "volumes" are areas x 1 mm: pixel count x the pixel area.
    pixel_mm2 = fp.cases[0].spacing[1] * fp.cases[0].spacing[2]
    vols = np.array(fp.cases[0].lesion_components["lesion"])
    assert vols.size > 0
    np.testing.assert_allclose(vols / pixel_mm2, np.round(vols / pixel_mm2), rtol=1e-9)
    fp.save(tmp_path / "fp.json")
    assert nan_equal(Fingerprint.load(tmp_path / "fp.json"), fp)


def test_mixed_2d_and_3d_dataset_is_refused(tmp_path: Path) -> None:
    raw = make_raw_dataset_2d(tmp_path / "raw", num_cases=3)
    vol = make_raw_dataset(tmp_path / "vol", num_cases=2)
    for p in (vol / "imagesTr").iterdir():
        shutil.copy(p, raw / "imagesTr" / p.name)
    with pytest.raises(
        DatasetError,
        match=r"mixes 3 2D images .*slice_000_0000.nii.gz.* 2 3D "
        r"volumes .*case_000_0000.nii.gz",
    ):
        compute_fingerprint(load_raw_dataset(raw))
