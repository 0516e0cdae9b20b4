"""summary.json layout, Bland–Altman statistics, figures and the autojoint_evaluate CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from autojoint.cli import evaluate as cli_evaluate
from autojoint.evaluation.evaluate import evaluate_folder, write_report
from autojoint.evaluation.plots import (
    BLAND_ALTMAN_PNG,
    BOXPLOT_PNG,
    CONFUSION_PNG,
    RELIABILITY_PNG,
    ROC_PNG,
)
from autojoint.evaluation.summary import volume_agreement
from tests.evaluation.helpers import LABELS, make_dataset, write_csvs

VOXEL_ML = 0.7 * 0.8 * 2.5 / 1000


def _png_size(path: Path) -> tuple[int, ...]:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return sitk.ReadImage(str(path)).GetSize()


def test_report_with_diagnoses_writes_every_figure(tmp_path: Path) -> None:
    pred_dir, ref_dir = make_dataset(tmp_path)
    summary = evaluate_folder(
        pred_dir, ref_dir, label_values=LABELS, ref_diagnoses_csv=write_csvs(tmp_path, pred_dir)
    )
    out = tmp_path / "report" / "summary.json"
    names = write_report(summary, out)
    assert names == [ROC_PNG, CONFUSION_PNG, BLAND_ALTMAN_PNG, BOXPLOT_PNG, RELIABILITY_PNG]
    assert sorted(p.name for p in out.parent.iterdir()) == sorted([*names, "summary.json"])
    for name in names:
        assert min(_png_size(out.parent / name)[:2]) >= 200
    loaded = json.loads(out.read_text(encoding="utf-8"))
    assert loaded["figures"] == names
    dx = loaded["diagnosis"]
    assert dx["macro_auc"] == pytest.approx(2.5 / 3)
    assert dx["per_class"]["pneumonia"]["auc"] == 0.5
    assert set(dx["roc"]) == {"normal", "covid", "pneumonia"}
    assert loaded["metric_per_case"][0]["probabilities"] == {
        "normal": 0.1,
        "covid": 0.8,
        "pneumonia": 0.1,
    }
    assert loaded["classification"]["accuracy"] == dx["accuracy"]  # first-release key kept


def test_report_without_diagnoses_skips_their_figures(tmp_path: Path) -> None:
    pred_dir, ref_dir = make_dataset(tmp_path)
    summary = evaluate_folder(pred_dir, ref_dir, label_values=LABELS)
    names = write_report(summary, tmp_path / "out" / "summary.json")
    assert names == [BLAND_ALTMAN_PNG, BOXPLOT_PNG]
    # One case: no SD, so no Bland–Altman; the box plot still has its Dice/NSD.
    for case in ("case_b", "case_c"):
        (ref_dir / f"{case}.nii.gz").unlink()
    one = evaluate_folder(pred_dir, ref_dir, label_values=LABELS)
    assert one["volume_agreement"]["lesion"] is None
    assert write_report(one, tmp_path / "one" / "summary.json", figures=True) == [BOXPLOT_PNG]
    assert write_report(one, tmp_path / "none" / "summary.json", figures=False) == []
    assert [p.name for p in (tmp_path / "none").iterdir()] == ["summary.json"]


def test_volume_agreement_by_hand(tmp_path: Path) -> None:
    """Lesion volumes (voxels) pred - ref: case_a 16 - 24, case_b 8 - 8, case_c 0 - 0."""
    pred_dir, ref_dir = make_dataset(tmp_path)
    summary = evaluate_folder(pred_dir, ref_dir, label_values=LABELS)
    diff = np.array([-8.0, 0.0, 0.0]) * VOXEL_ML
    bias, sd = diff.mean(), diff.std(ddof=1)
    got = summary["volume_agreement"]["lesion"]
    assert got["num_cases"] == 3
    assert got["bias_ml"] == pytest.approx(bias, rel=1e-6)
    assert got["sd_ml"] == pytest.approx(sd, rel=1e-6)
    assert got["loa_low_ml"] == pytest.approx(bias - 1.96 * sd, rel=1e-6)
    assert got["loa_high_ml"] == pytest.approx(bias + 1.96 * sd, rel=1e-6)
    assert volume_agreement(summary["metric_per_case"], "no_such_label") is None


def test_cli_flags_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pred_dir, ref_dir = make_dataset(tmp_path)
    ref_csv = write_csvs(tmp_path, pred_dir)
    dataset_json = tmp_path / "dataset.json"
    dataset_json.write_text(json.dumps({"labels": {"background": 0, **LABELS}}), encoding="utf-8")
    out = tmp_path / "eval" / "summary.json"
    argv = ["-p", str(pred_dir), "-r", str(ref_dir), "--diagnoses", str(ref_csv), "-o", str(out)]
    code = cli_evaluate.main([*argv, "--dataset-json", str(dataset_json), "--tolerance", "2"])
    assert code == 0
    assert "macro-AUC 0.8333" in capsys.readouterr().out
    summary = json.loads(out.read_text(encoding="utf-8"))
    assert summary["tolerance_mm"] == 2.0 and summary["labels"] == LABELS
    assert summary["metric_per_case"][0]["metrics"]["ground_glass"]["nsd"] == 1.0
    assert (out.parent / ROC_PNG).is_file()

    shutil.rmtree(out.parent)
    assert cli_evaluate.main([*argv, "-j", "2", "--no-figures"]) == 0
    assert [p.name for p in out.parent.iterdir()] == ["summary.json"]
    capsys.readouterr()
    assert cli_evaluate.main([*argv, "--tolerance", "-1"]) == 1
    assert "tolerance" in capsys.readouterr().err
    assert cli_evaluate.main([*argv, "-j", "0"]) == 1
    assert "--num-workers" in capsys.readouterr().err
    dataset_json.write_text(json.dumps({"name": "no labels"}), encoding="utf-8")
    assert cli_evaluate.main([*argv, "--dataset-json", str(dataset_json)]) == 1
    assert f"{dataset_json}: needs a 'labels' object" in capsys.readouterr().err


def _drop_key(obj: object, key: str) -> object:
    if isinstance(obj, dict):
        return {k: _drop_key(v, key) for k, v in obj.items() if k != key}
    if isinstance(obj, list):
        return [_drop_key(v, key) for v in obj]
    return obj


def test_cli_surfel_nsd_adds_only_nsd_surfel(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pred_dir, ref_dir = make_dataset(tmp_path)
    argv = ["-p", str(pred_dir), "-r", str(ref_dir), "--no-figures", "--tolerance", "2"]
    plain, surfel = tmp_path / "plain" / "summary.json", tmp_path / "surfel" / "summary.json"
    assert cli_evaluate.main([*argv, "-o", str(plain)]) == 0
    assert "surfel NSD" not in capsys.readouterr().out
    assert cli_evaluate.main([*argv, "-o", str(surfel), "--surfel-nsd"]) == 0
    assert "surfel NSD" in capsys.readouterr().out
    got, want = (
        json.loads(surfel.read_text(encoding="utf-8")),
        json.loads(plain.read_text(encoding="utf-8")),
    )
    for entry in got["metric_per_case"]:
        assert all("nsd_surfel" in block for block in entry["metrics"].values())
    assert list(got["mean"]) == ["label_1", "label_2", "lesion"]
    assert all("nsd_surfel" in block for block in got["mean"].values())
    assert got["metric_per_case"][0]["metrics"]["label_2"]["nsd_surfel"] == 1.0
    assert _drop_key(got, "nsd_surfel") == want
