"""Tests of the synthetic chest-CT demo generator (tiny field of view for speed)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from dataset_conversion.demo_lesions import MIN_CORE_VOXELS
from dataset_conversion.generate_demo import (
    DIAGNOSES,
    DemoCase,
    generate_case,
    generate_dataset,
    main,
)

FOV, ZEXT = 60.0, 40.0
ROOT = Path(__file__).resolve().parents[1]


def _case(diagnosis: str, seed: int) -> DemoCase:
    return generate_case(
        f"t{seed}", diagnosis, np.random.default_rng(seed), fov_mm=FOV, z_extent_mm=ZEXT
    )


@pytest.fixture(scope="module")
def cohort() -> dict[str, list[DemoCase]]:
    return {dx: [_case(dx, 1000 * k + i) for i in range(15)] for k, dx in enumerate(DIAGNOSES)}


def _findings(case: DemoCase) -> dict[str, float]:
    """Scan-level statistics measured from the label map alone (not generator internals)."""
    lesion = case.label > 0
    n_comp = ndimage.label(lesion, structure=np.ones((3, 3, 3)))[1]
    lungs, _ = ndimage.label(case.lung_mask)
    depth = ndimage.distance_transform_edt(case.lung_mask, sampling=case.spacing_zyx)
    max_depth = ndimage.maximum(depth, lungs, index=lungs[lesion]) if lesion.any() else 1.0
    return {
        "count": float(n_comp),
        "ratio": lesion.sum() / case.lung_mask.sum(),
        "consolidation": (case.label == 2).sum() / max(lesion.sum(), 1),
        "depth": float(np.mean(depth[lesion] / max_depth)) if lesion.any() else np.nan,
    }


@pytest.fixture(scope="module")
def means(cohort: dict[str, list[DemoCase]]) -> dict[str, dict[str, float]]:
    """Per-class mean of each finding, computed once (the distance transforms dominate)."""
    out = {}
    for dx, cases in cohort.items():
        rows = [_findings(c) for c in cases]
        out[dx] = {
            k: float(np.nanmean([r[k] for r in rows])) if dx != "normal" else 0.0 for k in rows[0]
        }
    return out


def test_same_seed_identical_different_seed_differs() -> None:
    a, b, c = _case("COVID-19", 5), _case("COVID-19", 5), _case("COVID-19", 6)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.label, b.label)
    assert (a.spacing_zyx, a.origin_xyz, a.direction) == (b.spacing_zyx, b.origin_xyz, b.direction)
    assert a.image.shape != c.image.shape or not np.array_equal(a.image, c.image)
    assert a.image.dtype == np.int16 and a.label.dtype == np.uint8
    assert a.image.shape == a.label.shape == a.lung_mask.shape


def _read(path: Path) -> tuple[np.ndarray, sitk.Image]:
    img = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(img), img


def test_dataset_layout_geometry_and_atomic_write(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    generate_dataset(out, num_train=4, num_test=2, seed=3, fov_mm=FOV, z_extent_mm=ZEXT)
    meta = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    assert meta["channel_names"] == {"0": "CT"}
    assert meta["labels"] == {"background": 0, "ground_glass": 1, "consolidation": 2}
    assert meta["numTraining"] == 4 and meta["file_ending"] == ".nii.gz"
    assert meta["classes"] == ["COVID-19", "CAP", "normal"] and meta["description"]
    seen: set[str] = set()
    for split, n in (("Tr", 4), ("Ts", 2)):
        with open(out / f"diagnoses{split}.csv", encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert len(rows) == n and all(r["diagnosis"] in DIAGNOSES for r in rows)
        assert not seen & {r["case"] for r in rows}
        seen |= {r["case"] for r in rows}
        assert sorted(p.name for p in (out / f"images{split}").iterdir()) == sorted(
            f"{r['case']}_0000.nii.gz" for r in rows
        )
        for r in rows:
            image, img = _read(out / f"images{split}" / f"{r['case']}_0000.nii.gz")
            label, lab = _read(out / f"labels{split}" / f"{r['case']}.nii.gz")
            assert image.dtype == np.int16 and label.dtype == np.uint8
            assert img.GetSize() == lab.GetSize()
            for get in ("GetSpacing", "GetOrigin", "GetDirection"):
                np.testing.assert_allclose(getattr(img, get)(), getattr(lab, get)())
            assert set(np.unique(label)) <= {0, 1, 2}
            assert (r["diagnosis"] == "normal") == (not label.any())
    assert seen == {f"demo_{i:03d}" for i in range(6)}
    assert not [p for p in out.rglob("*") if p.name.startswith(".tmp")]
    # a second run with the same seed writes the same arrays; a smaller run drops stale cases
    again = tmp_path / "again"
    generate_dataset(again, num_train=4, seed=3, fov_mm=FOV, z_extent_mm=ZEXT)
    for p in (out / "labelsTr").iterdir():
        np.testing.assert_array_equal(_read(p)[0], _read(again / "labelsTr" / p.name)[0])
    np.testing.assert_array_equal(
        _read(out / "imagesTr" / "demo_001_0000.nii.gz")[0],
        _read(again / "imagesTr" / "demo_001_0000.nii.gz")[0],
    )
    generate_dataset(out, num_train=2, seed=3, fov_mm=FOV, z_extent_mm=ZEXT)
    assert sorted(p.name for p in (out / "labelsTr").iterdir()) == [
        "demo_000.nii.gz",
        "demo_001.nii.gz",
    ]
    assert not list((out / "imagesTs").iterdir()) and not (out / "diagnosesTs.csv").exists()
    assert json.loads((out / "dataset.json").read_text(encoding="utf-8"))["numTraining"] == 2


def test_geometry_varies_and_is_valid(cohort: dict[str, list[DemoCase]]) -> None:
    cases = [c for group in cohort.values() for c in group]
    directions = {c.direction for c in cases}
    identity = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    assert identity in directions and len(directions) > 1
    for c in cases:
        d = np.reshape(c.direction, (3, 3))
        np.testing.assert_allclose(d @ d.T, np.eye(3))
        sz, sy, sx = c.spacing_zyx
        assert sy == sx and 0.6 <= sx <= 1.0 and 1.0 <= sz <= 5.0
        assert abs(c.image.shape[2] * sx - FOV) <= sx
    assert len({c.origin_xyz for c in cases}) == len(cases)


def test_lesions_live_in_lungs_and_normals_are_clean(cohort: dict[str, list[DemoCase]]) -> None:
    for dx, cases in cohort.items():
        for c in cases:
            assert not ((c.label > 0) & ~c.lung_mask).any()
            assert c.label.any() == (dx != "normal")
            assert c.lung_mask.sum() > 0.05 * c.lung_mask.size


def test_findings_follow_the_literature(
    cohort: dict[str, list[DemoCase]], means: dict[str, dict[str, float]]
) -> None:
    covid, cap = means["COVID-19"], means["CAP"]
    assert covid["count"] > cap["count"] + 1.5
    assert covid["ratio"] > 2 * cap["ratio"]
    assert 0.08 < covid["ratio"] < 0.22 and 0.02 < cap["ratio"] < 0.08
    assert cap["consolidation"] > 0.15 > covid["consolidation"]
    assert covid["depth"] < cap["depth"]  # COVID lesions lie closer to the pleura
    peripheral = {
        dx: np.mean([les.peripheral for c in cohort[dx] for les in c.lesions])
        for dx in ("COVID-19", "CAP")
    }
    assert peripheral["COVID-19"] > peripheral["CAP"] + 0.2
    assert {len({les.lung for les in c.lesions}) for c in cohort["COVID-19"]} == {2}


def test_consolidation_is_solid_cores_where_the_generator_put_them(
    cohort: dict[str, list[DemoCase]],
) -> None:
    """Issue 16: a core-less COVID-19 lesion used to mark its centre voxel consolidation
    (median component 3.4 mm3). Every consolidation component is now a core of at least
    ``MIN_CORE_VOXELS`` voxels, drawn only where a lesion record says it has a core, and CAP
    consolidation is a real second density peak (a large share of its lesion voxels)."""
    for dx in ("COVID-19", "CAP"):
        for c in cohort[dx]:
            solid = c.label == 2
            parts, n = ndimage.label(solid, structure=np.ones((3, 3, 3)))
            sizes = np.bincount(parts.ravel())[1:]
            assert n == 0 or sizes.min() >= MIN_CORE_VOXELS, (c.case_id, sorted(sizes))
            cores = [les.core_mm3 for les in c.lesions if les.core_mm3 > 0]
            assert n <= len(cores)  # overlapping cores may merge, never split
            voxel_mm3 = float(np.prod(c.spacing_zyx))
            assert solid.sum() * voxel_mm3 <= sum(cores) * (1 + 1e-3)
            if not cores:
                assert not solid.any(), c.case_id
    covid_cored = [les.core_mm3 > 0 for c in cohort["COVID-19"] for les in c.lesions]
    assert 0.1 < np.mean(covid_cored) < 0.5  # most COVID-19 lesions are pure ground-glass
    cap_share = [(c.label == 2).sum() / (c.label > 0).sum() for c in cohort["CAP"]]
    assert 0.2 < np.mean(cap_share) < 0.6


def test_hounsfield_ranges(cohort: dict[str, list[DemoCase]]) -> None:
    ggo, cons = [], []
    for c in cohort["COVID-19"] + cohort["CAP"] + cohort["normal"][:3]:
        img = c.image.astype(np.float32)
        assert abs(np.median(img[:, :3, :3]) + 1000) < 30  # air in the corners
        assert abs(np.median(img[c.lung_mask & (c.label == 0)]) + 850) < 40
        bone = img > 300
        assert bone.any() and not (bone & c.lung_mask).any()
        assert img.min() >= -1024 and img.max() <= 3071
        if c.diagnosis == "COVID-19":
            ggo.append(img[c.label > 0])
        else:
            cons.append(img[c.label == 2])
    ggo_hu, cons_hu = np.concatenate(ggo), np.concatenate(cons)
    assert np.mean((ggo_hu >= -960) & (ggo_hu <= -600)) > 0.7
    assert -70 < np.median(cons_hu) < 140


def test_bad_arguments_raise(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="diagnosis"):
        generate_case("x", "flu", rng, fov_mm=FOV, z_extent_mm=ZEXT)
    with pytest.raises(ValueError, match="positive"):
        generate_case("x", "CAP", rng, fov_mm=0.0)
    with pytest.raises(ValueError, match="num_train"):
        generate_dataset(tmp_path, num_train=0)
    with pytest.raises(ValueError, match="num_test"):
        generate_dataset(tmp_path, num_train=1, num_test=-1)
    with pytest.raises(ValueError, match="positive"):
        generate_dataset(tmp_path, num_train=1, fov_mm=-5.0)
    assert not any(tmp_path.iterdir())


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    assert (
        main(
            [
                "-o",
                str(out),
                "--num-train",
                "2",
                "--num-test",
                "1",
                "--seed",
                "4",
                "--fov-mm",
                str(FOV),
                "--z-extent-mm",
                str(ZEXT),
            ]
        )
        == 0
    )
    assert len(list((out / "imagesTr").glob("*.nii.gz"))) == 2
    assert (out / "diagnosesTs.csv").read_text(encoding="utf-8").count("\n") == 2
    with pytest.raises(SystemExit) as err:
        main(["-o", str(out), "--num-train", "0"])
    assert err.value.code == 2 and "num_train" in capsys.readouterr().err
    help_text = subprocess.run(
        [sys.executable, "-m", "dataset_conversion.generate_demo", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        encoding="utf-8",
        check=True,
    ).stdout
    assert "--fov-mm" in help_text and "--num-test" in help_text
