"""evaluate_folder / write_summary on tiny synthetic NIfTI masks with known answers."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from autojoint.evaluation.evaluate import evaluate_folder, write_summary
from tests.evaluation.helpers import LABELS, SHAPE, make_dataset, write_csvs, write_mask


def test_segmentation_known_dice_and_means(tmp_path: Path, caplog) -> None:
    pred_dir, ref_dir = make_dataset(tmp_path)
    write_mask(np.ones(SHAPE), pred_dir / "case_extra.nii.gz")
    with caplog.at_level(logging.WARNING, logger="autojoint.evaluation.evaluate"):
        s = evaluate_folder(pred_dir, ref_dir, label_values=LABELS)
    assert "case_extra" in caplog.text
    assert s["num_cases"] == 3
    assert [e["case"] for e in s["per_case"]] == ["case_a", "case_b", "case_c"]
    a = s["per_case"][0]["segmentation"]
    assert a["ground_glass"]["dice"] == pytest.approx(2 / 3)
    assert (a["ground_glass"]["n_ref"], a["ground_glass"]["n_pred"]) == (16, 8)
    assert a["consolidation"]["dice"] == 1.0
    assert a["lesion"]["dice"] == pytest.approx(0.8)
    assert math.isnan(s["per_case"][1]["segmentation"]["consolidation"]["dice"])
    assert all(math.isnan(v["dice"]) for v in s["per_case"][2]["segmentation"].values())
    means = s["mean"]
    assert (means["ground_glass"]["dice"], means["ground_glass"]["num_cases_defined"]) == (
        pytest.approx(5 / 6),
        2,
    )
    assert (means["consolidation"]["dice"], means["consolidation"]["num_cases_defined"]) == (1, 1)
    assert (means["lesion"]["dice"], means["lesion"]["num_cases_defined"]) == (
        pytest.approx(0.9),
        2,
    )
    # HD95 etc. are undefined where a mask is empty: case_b and case_c for consolidation.
    assert means["consolidation"]["num_defined"]["hd95"] == 1
    assert means["ground_glass"]["num_defined"]["hd95"] == 2
    assert s["classification"] is None and s["diagnosis"] is None
    assert s["per_case"][0]["diagnosis_ref"] is None
    assert [e["case"] for e in s["metric_per_case"]] == ["case_a", "case_b", "case_c"]


def test_case_a_every_metric_by_hand(tmp_path: Path) -> None:
    """case_a ground glass: reference 2x2x4 voxels (z, y, x), prediction its first half in x.

    Spacing x 0.7, y 0.8, z 2.5 mm. Every voxel of both blocks is surface. Prediction to
    reference: 8 zeros; reference to prediction: 8 zeros, 4 at 0.7 mm (x = 4), 4 at 1.4 mm
    (x = 5). Pooled over 24 surface voxels.
    """
    pred_dir, ref_dir = make_dataset(tmp_path)
    s = evaluate_folder(pred_dir, ref_dir, label_values=LABELS, tolerance_mm=1.0)
    gg = s["metric_per_case"][0]["metrics"]["ground_glass"]
    voxel_ml = 0.7 * 0.8 * 2.5 / 1000
    expected = {
        "dice": 2 / 3,
        "iou": 0.5,
        "sensitivity": 0.5,
        "specificity": 1.0,
        "precision": 1.0,
        "asd": (4 * 0.7 + 4 * 1.4) / 24,
        "rmsd": math.sqrt((4 * 0.7**2 + 4 * 1.4**2) / 24),
        "hd95": 1.4,  # 95th percentile at rank 21.85 of 24 sorted values
        "nsd": 20 / 24,
        "aso": 0.5 * (8 / 8 + 12 / 16),
        "volume_ref_ml": 16 * voxel_ml,
        "volume_pred_ml": 8 * voxel_ml,
    }
    for key, value in expected.items():
        # NIfTI stores spacing as float32.
        assert gg[key] == pytest.approx(value, rel=1e-6), key
    assert s["metric_per_case"][0]["spacing"] == pytest.approx([2.5, 0.8, 0.7])
    assert s["tolerance_mm"] == 1.0
    tight = evaluate_folder(pred_dir, ref_dir, label_values=LABELS, tolerance_mm=0.5)
    assert tight["metric_per_case"][0]["metrics"]["ground_glass"]["nsd"] == pytest.approx(16 / 24)
    assert tight["tolerance_mm"] == 0.5


def test_slice_offset_is_measured_in_z_spacing(tmp_path: Path) -> None:
    """A one-voxel-thick plate predicted one slice off: every distance is z spacing 2.5 mm."""
    ref, pred = np.zeros(SHAPE, np.uint8), np.zeros(SHAPE, np.uint8)
    ref[3, 2:8, 2:10] = 1
    pred[4, 2:8, 2:10] = 1
    write_mask(ref, tmp_path / "ref" / "plate.nii.gz")
    write_mask(pred, tmp_path / "pred" / "plate.nii.gz")
    s = evaluate_folder(tmp_path / "pred", tmp_path / "ref", label_values={"gg": 1})
    m = s["metric_per_case"][0]["metrics"]["gg"]
    assert m["asd"] == m["hd95"] == m["rmsd"] == pytest.approx(2.5, rel=1e-6)
    assert (m["dice"], m["nsd"], m["aso"]) == (0.0, 0.0, 0.0)


def test_parallel_equals_serial_and_worker_errors_surface(tmp_path: Path) -> None:
    pred_dir, ref_dir = make_dataset(tmp_path)
    serial = evaluate_folder(pred_dir, ref_dir, num_workers=1)
    parallel = evaluate_folder(pred_dir, ref_dir, num_workers=2)
    out_a, out_b = tmp_path / "a.json", tmp_path / "b.json"
    write_summary(serial, out_a)
    write_summary(parallel, out_b)
    assert out_a.read_text(encoding="utf-8") == out_b.read_text(encoding="utf-8")
    write_mask(np.zeros(SHAPE), pred_dir / "case_b.nii.gz", spacing=(0.7, 0.8, 2.6))
    with pytest.raises(ValueError, match="geometry") as info:
        evaluate_folder(pred_dir, ref_dir, num_workers=2)
    assert str(pred_dir / "case_b.nii.gz") in str(info.value)


def test_bad_tolerance_is_refused(tmp_path: Path) -> None:
    pred_dir, ref_dir = make_dataset(tmp_path)
    with pytest.raises(ValueError, match="tolerance"):
        evaluate_folder(pred_dir, ref_dir, tolerance_mm=-1.0)


def test_default_labels_come_from_references(tmp_path: Path) -> None:
    pred_dir, ref_dir = make_dataset(tmp_path)
    stray = np.zeros(SHAPE, np.uint8)
    stray[0, 0, 0] = 3  # value only ever predicted: not a reference label
    write_mask(stray, pred_dir / "case_c.nii.gz")
    s = evaluate_folder(pred_dir, ref_dir)
    assert s["labels"] == {"label_1": 1, "label_2": 2}
    for entry in s["per_case"]:
        assert list(entry["segmentation"]) == ["label_1", "label_2", "lesion"]
    b = s["per_case"][1]["segmentation"]["label_2"]
    assert math.isnan(b["dice"]) and b["n_ref"] == b["n_pred"] == 0
    # A label absent from both maps of a case gets the same scores as scoring empty masks.
    absent = s["metric_per_case"][1]["metrics"]["label_2"]
    assert list(absent) == list(s["metric_per_case"][0]["metrics"]["label_2"])
    assert absent["tn"] == int(np.prod(SHAPE)) and absent["specificity"] == 1.0
    assert all(math.isnan(absent[k]) for k in ("nsd", "asd", "hd95", "rmsd", "aso", "iou"))
    assert absent["volume_ref_ml"] == absent["volume_pred_ml"] == 0.0
    assert s["mean"]["label_1"]["dice"] == pytest.approx(5 / 6)
    c_lesion = s["per_case"][2]["segmentation"]["lesion"]
    assert (c_lesion["fp"], c_lesion["dice"]) == (1, 0.0)


@pytest.mark.parametrize(
    "kwargs",
    [{"spacing": (0.7, 0.8, 2.6)}, {"origin": (-10.0, 5.0, 3.3)}],
)
def test_geometry_mismatch_names_both_files(tmp_path: Path, kwargs: dict) -> None:
    pred_dir, ref_dir = make_dataset(tmp_path)
    write_mask(np.zeros(SHAPE), pred_dir / "case_b.nii.gz", **kwargs)
    with pytest.raises(ValueError, match="geometry") as info:
        evaluate_folder(pred_dir, ref_dir, label_values=LABELS)
    assert str(pred_dir / "case_b.nii.gz") in str(info.value)
    assert str(ref_dir / "case_b.nii.gz") in str(info.value)


def test_geometry_round_off_is_tolerated(tmp_path: Path) -> None:
    pred_dir, ref_dir = make_dataset(tmp_path)
    b = sitk.GetArrayFromImage(sitk.ReadImage(str(pred_dir / "case_b.nii.gz")))
    write_mask(
        b,
        pred_dir / "case_b.nii.gz",
        spacing=(0.7 * (1 + 1e-6), 0.8, 2.5),
        origin=(-10.0 + 1e-5, 5.0, 3.2),
    )
    s = evaluate_folder(pred_dir, ref_dir, label_values=LABELS)
    assert s["per_case"][1]["segmentation"]["ground_glass"]["dice"] == 1.0


def test_size_mismatch_raises(tmp_path: Path) -> None:
    pred_dir, ref_dir = make_dataset(tmp_path)
    write_mask(np.zeros((8, 10, 11)), pred_dir / "case_a.nii.gz")
    with pytest.raises(ValueError, match="size"):
        evaluate_folder(pred_dir, ref_dir)


def test_missing_prediction_names_case(tmp_path: Path) -> None:
    pred_dir, ref_dir = make_dataset(tmp_path)
    (pred_dir / "case_b.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match="case_b.nii.gz") as info:
        evaluate_folder(pred_dir, ref_dir)
    assert "autojoint_predict" in str(info.value)


def test_diagnoses_round_trip(tmp_path: Path) -> None:
    pred_dir, ref_dir = make_dataset(tmp_path)
    ref_csv = write_csvs(tmp_path, pred_dir)
    s = evaluate_folder(pred_dir, ref_dir, label_values=LABELS, ref_diagnoses_csv=ref_csv)
    c = s["classification"]
    assert c["classes"] == ["normal", "covid", "pneumonia"]  # p_ column order
    assert c["accuracy"] == pytest.approx(2 / 3)
    assert c["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [0, 1, 0]]
    assert c["per_class"]["covid"]["precision"] == 0.5
    # pneumonia's only positive (0.1) ties both negatives -> AUC 0.5
    assert c["auc"] == {
        "normal": 1.0,
        "covid": 1.0,
        "pneumonia": 0.5,
        "macro": pytest.approx(2.5 / 3),
    }
    assert s["per_case"][2]["diagnosis_ref"] == "pneumonia"
    assert s["per_case"][2]["diagnosis_pred"] == "covid"


@pytest.mark.parametrize(
    ("ref_text", "match"),
    [
        ("case,label\ncase_a,covid\n", "header"),
        ("case,diagnosis\ncase_a,covid\ncase_b,normal\n", "case_c"),
        ("case,diagnosis\ncase_a,covid\ncase_b,normal\ncase_c,flu\n", "flu"),
    ],
)
def test_diagnoses_errors(tmp_path: Path, ref_text: str, match: str) -> None:
    pred_dir, ref_dir = make_dataset(tmp_path)
    ref_csv = write_csvs(tmp_path, pred_dir)
    ref_csv.write_text(ref_text, encoding="utf-8")
    with pytest.raises(ValueError, match=match):
        evaluate_folder(pred_dir, ref_dir, ref_diagnoses_csv=ref_csv)


def test_write_summary_is_strict_json_with_null(tmp_path: Path) -> None:
    pred_dir, ref_dir = make_dataset(tmp_path)
    s = evaluate_folder(
        pred_dir, ref_dir, label_values=LABELS, ref_diagnoses_csv=write_csvs(tmp_path, pred_dir)
    )
    out = tmp_path / "out" / "summary.json"
    write_summary(s, out)
    text = out.read_text(encoding="utf-8")
    assert "NaN" not in text and "Infinity" not in text

    def _reject(name: str) -> None:
        raise AssertionError(f"non-standard JSON constant {name}")

    loaded = json.loads(text, parse_constant=_reject)
    assert loaded["per_case"][2]["segmentation"]["lesion"]["dice"] is None
    assert loaded["mean"]["consolidation"]["num_cases_defined"] == 1
    assert loaded["classification"]["accuracy"] == pytest.approx(2 / 3)
    assert [p.name for p in out.parent.iterdir()] == ["summary.json"]


def test_missing_prediction_csv_fails_before_reading_images(tmp_path: Path) -> None:
    pred_dir, ref_dir = make_dataset(tmp_path)
    ref_csv = write_csvs(tmp_path, pred_dir)
    (pred_dir / "diagnoses.csv").unlink()
    with pytest.raises(FileNotFoundError, match="autojoint_predict"):
        evaluate_folder(pred_dir, ref_dir, ref_diagnoses_csv=ref_csv)


def test_explicit_classes_need_probability_columns(tmp_path: Path) -> None:
    pred_dir, ref_dir = make_dataset(tmp_path)
    ref_csv = write_csvs(tmp_path, pred_dir)
    with pytest.raises(ValueError, match="probability column.*flu"):
        evaluate_folder(
            pred_dir,
            ref_dir,
            ref_diagnoses_csv=ref_csv,
            classes=["normal", "covid", "pneumonia", "flu"],
        )


def _without_surfel_nsd(obj: object) -> object:
    """``obj`` with every ``nsd_surfel`` key (also in ``num_defined``) removed."""
    if isinstance(obj, dict):
        return {k: _without_surfel_nsd(v) for k, v in obj.items() if k != "nsd_surfel"}
    if isinstance(obj, list):
        return [_without_surfel_nsd(v) for v in obj]
    return obj


def test_surfel_nsd_adds_one_key_per_label(tmp_path: Path) -> None:
    """case_a consolidation is predicted exactly (surfel NSD 1), case_b has none (NaN)."""
    pred_dir, ref_dir = make_dataset(tmp_path)
    plain = evaluate_folder(pred_dir, ref_dir, label_values=LABELS)
    with_surfels = evaluate_folder(pred_dir, ref_dir, label_values=LABELS, use_surfel_nsd=True)
    a, b = (e["metrics"] for e in with_surfels["metric_per_case"][:2])
    assert set(a) == {*LABELS, "lesion"}
    assert a["consolidation"]["nsd_surfel"] == 1.0
    assert 0 < a["ground_glass"]["nsd_surfel"] < 1
    assert math.isnan(b["consolidation"]["nsd_surfel"])
    mean = with_surfels["mean"]["lesion"]
    assert mean["num_defined"]["nsd_surfel"] == mean["num_defined"]["nsd"] == 2
    # Everything else is the default run's, key for key (json: NaN compares as null).
    stripped = json.dumps(_without_surfel_nsd(with_surfels))
    assert stripped == json.dumps(plain)
    assert "nsd_surfel" not in json.dumps(plain)
