"""The predictor on tiny synthetic scans with untrained folds: exact input grids, fold
ensembling, outputs, per-case failures, ``--continue`` after a kill."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from autojoint.cli import predict as cli_predict
from autojoint.cli.common import EXIT_SOME_FAILED
from autojoint.inference import case_writing, ensemble, predictor
from autojoint.inference.ensemble import load_ensemble
from autojoint.inference.predictor import (
    PredictOptions,
    find_input_cases,
    predict_case,
    run_prediction,
)
from autojoint.io.workdir import fold_dir
from autojoint.networks.joint_net import JointNet
from autojoint.runtime import checkpoint
from autojoint.runtime.checkpoint import save_checkpoint
from tests.inference.tiny_workdir import make_tiny_workdir, record_predicted_cases
from tests.synthetic import CLASSES, make_case, write_volume

FAST = ["--no-tta", "--step-size", "1"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    raw, work, _ = make_tiny_workdir(root, num_cases=3)
    return {"root": root, "images": raw / "imagesTr", "work": work}


def _predict(tiny: dict[str, Path], inputs: Path, out: Path, *extra: str) -> int:
    args = ["-i", str(inputs), "-o", str(out), "-w", str(tiny["work"]), *FAST, *extra]
    return cli_predict.main(args)


def _assert_same_grid(pred_path: Path, ref: sitk.Image) -> None:
    pred = sitk.ReadImage(str(pred_path))
    assert pred.GetSize() == ref.GetSize()
    np.testing.assert_allclose(pred.GetSpacing(), ref.GetSpacing(), rtol=1e-6)
    np.testing.assert_allclose(pred.GetOrigin(), ref.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(pred.GetDirection(), ref.GetDirection(), atol=1e-6)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_outputs_tables_and_grids(tiny: dict[str, Path]) -> None:
    out = tiny["root"] / "out_all"
    assert _predict(tiny, tiny["images"], out, "--save-probabilities", "--evidence") == 0
    rows = _rows(out / "diagnoses.csv")
    volume_columns = ["volume_ml_ground_glass", "volume_ml_consolidation", "volume_ml_lesion"]
    assert list(rows[0]) == [
        "case",
        "diagnosis",
        *[f"p_{c}" for c in CLASSES],
        *volume_columns,
        "lung_volume_ml",
        "lung_involvement",
    ]
    summary = json.loads((out / "diagnoses.json").read_text(encoding="utf-8"))
    assert summary["classes"] == CLASSES and summary["folds"] == ["0", "1"]
    assert [c["case"] for c in summary["cases"]] == [r["case"] for r in rows]
    for row, entry in zip(rows, summary["cases"], strict=True):
        probs = np.array([entry["probabilities"][c] for c in CLASSES])
        np.testing.assert_allclose(probs.sum(), 1.0, atol=1e-5)
        assert entry["diagnosis"] == row["diagnosis"] == CLASSES[int(np.argmax(probs))]
        # Fold agreement: share of folds whose own argmax is the ensemble's diagnosis.
        folds = entry["fold_probabilities"]
        votes = [max(folds[f], key=folds[f].get) == entry["diagnosis"] for f in ("0", "1")]
        assert entry["fold_agreement"] == pytest.approx(np.mean(votes))
        # Ensemble = mean of the folds' probabilities.
        mean = [np.mean([folds[f][c] for f in ("0", "1")]) for c in CLASSES]
        np.testing.assert_allclose(probs, mean, atol=1e-6)
        ref = sitk.ReadImage(str(tiny["images"] / f"{row['case']}_0000.nii.gz"))
        for name in (f"{row['case']}.nii.gz", f"{row['case']}_evidence.nii.gz"):
            _assert_same_grid(out / name, ref)
        mask = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{row['case']}.nii.gz")))
        voxel_ml = np.prod(ref.GetSpacing()) / 1000
        assert float(row["volume_ml_lesion"]) == pytest.approx(
            (mask > 0).sum() * voxel_ml, abs=1e-3
        )
        lung = float(row["lung_volume_ml"])
        assert lung > 0 and float(row["lung_involvement"]) == pytest.approx(
            float(row["volume_ml_lesion"]) / lung, rel=1e-3
        )
        with np.load(out / f"{row['case']}_probabilities.npz") as f:
            p = f["probabilities"].astype(np.float32)
            assert p.shape == (3, *mask.shape) and f["probabilities"].dtype == np.float16
            assert list(f["labels"]) == ["background", "ground_glass", "consolidation"]
            np.testing.assert_allclose(f["spacing"], ref.GetSpacing()[::-1])
        np.testing.assert_allclose(p.sum(axis=0), 1.0, atol=3e-3)
        assert np.mean(np.argmax(p, axis=0) == mask) > 0.999  # float16 may split near-ties
        png = (out / f"{row['case']}_evidence.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert not list(out.glob(".tmp_*")) and not (out / "failures.csv").exists()


def test_fold_ensemble_is_the_mean_of_single_folds(tiny: dict[str, Path]) -> None:
    dev = torch.device("cpu")
    ens = load_ensemble(tiny["work"], ["0", "1"], dev)
    case = find_input_cases(tiny["images"], 1)[1]  # the flipped-direction case

    def run(nets: list) -> predictor.CasePrediction:  # with mirroring TTA along x
        axes = [(2,)] * len(nets)
        return predict_case(
            case, ens.plan, nets, dev, keep_probabilities=True, mirror_axes=axes, tile_batch=2
        )

    both, first, second = run(list(ens.nets)), run([ens.nets[0]]), run([ens.nets[1]])
    assert both.lesion_probs is not None and first.lesion_probs is not None
    assert second.lesion_probs is not None
    np.testing.assert_allclose(
        both.lesion_probs, (first.lesion_probs + second.lesion_probs) / 2, atol=1e-5
    )
    np.testing.assert_allclose(
        both.diagnosis_probs, (first.diagnosis_probs + second.diagnosis_probs) / 2
    )
    np.testing.assert_array_equal(both.mask, np.argmax(both.lesion_probs, axis=0))


def test_mirror_axes_come_from_the_checkpoint_or_the_trainer() -> None:
    from autojoint.data.augmentation import augmentation_spec

    spec = augmentation_spec("default", (16, 32, 32), (1.0, 1.0, 1.0))
    assert spec.mirror_axes == checkpoint.DEFAULT_MIRROR_AXES
    assert checkpoint.trained_mirror_axes({}) == (0, 1, 2)
    assert checkpoint.trained_mirror_axes({"mirror_axes": [1, 2]}) == (1, 2)
    # What the trainer writes into its checkpoints' extra.
    none = augmentation_spec("none", (16, 32, 32), (1.0, 1.0, 1.0)).to_dict()
    assert checkpoint.trained_mirror_axes({"augmentation": none}) == ()
    light = augmentation_spec("light", (16, 32, 32), (1.0, 1.0, 1.0)).to_dict()
    assert checkpoint.trained_mirror_axes({"augmentation": light}) == (0, 1, 2)


def _oblique_direction(angle: float = 0.4) -> tuple[float, ...]:
    c, s = np.cos(angle), np.sin(angle)
    return (c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0)


def test_flipped_oblique_and_anisotropic_inputs_keep_their_grid(tiny: dict[str, Path]) -> None:
    inputs = tiny["root"] / "odd_inputs"
    rng = np.random.default_rng(5)
    img, _ = make_case(rng, "COVID-19", (11, 37, 42))
    grids = {
        "oblique": ((3.0, 0.7, 0.9), (1.5, -20.0, 7.25), _oblique_direction()),
        "flipped": ((2.0, 0.8, 0.8), (-3.0, 4.0, 5.0), (-1, 0, 0, 0, 1, 0, 0, 0, -1)),
        "permuted": ((0.9, 0.8, 4.0), (0.0, 0.0, 0.0), (0, 0, 1, 1, 0, 0, 0, 1, 0)),
    }
    for name, (spacing, origin, direction) in grids.items():
        write_volume(img, inputs / f"{name}.nii.gz", spacing, origin, direction)
    out = tiny["root"] / "out_odd"
    assert _predict(tiny, inputs, out, "-f", "0") == 0
    for name in grids:
        _assert_same_grid(out / f"{name}.nii.gz", sitk.ReadImage(str(inputs / f"{name}.nii.gz")))


def _write_dicom_series(volume: np.ndarray, folder: Path, spacing_zyx, origin) -> None:
    """A minimal CT DICOM series (one file per slice) SimpleITK's series reader accepts."""
    folder.mkdir(parents=True)
    img = sitk.GetImageFromArray(volume.astype(np.int16))
    img.SetSpacing(tuple(float(s) for s in reversed(spacing_zyx)))
    img.SetOrigin(origin)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series = "1.2.826.0.1.3680043.2.1125.1"
    for k in range(img.GetDepth()):
        sl = img[:, :, k]
        for tag, value in (
            ("0008|0060", "CT"),
            ("0020|000e", series),
            ("0020|0013", str(k + 1)),
            ("0020|0032", "\\".join(map(str, img.TransformIndexToPhysicalPoint((0, 0, k))))),
            ("0020|0037", "1\\0\\0\\0\\1\\0"),
            ("0018|0050", str(spacing_zyx[0])),
            ("0028|0030", f"{spacing_zyx[1]}\\{spacing_zyx[2]}"),
        ):
            sl.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice_{k:03d}.dcm"))
        writer.Execute(sl)


def test_dicom_series_input_gives_a_mask_on_its_grid(tiny: dict[str, Path]) -> None:
    inputs = tiny["root"] / "dicom_inputs"
    img, _ = make_case(np.random.default_rng(6), "CAP", (10, 36, 36))
    _write_dicom_series(img, inputs / "series_a", (2.5, 0.75, 0.75), (-10.0, 20.0, 30.0))
    ref = sitk.ReadImage(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(inputs / "series_a")))
    assert ref.GetSize() == (36, 36, 10)
    out = tiny["root"] / "out_dicom"
    assert _predict(tiny, inputs, out, "-f", "0") == 0
    _assert_same_grid(out / "series_a.nii.gz", ref)


def test_real_dicom_and_flipped_real_ct_keep_their_grid(tmp_path: Path) -> None:
    from tests.shared_data import shared_data_or_skip

    ts = shared_data_or_skip("totalsegmentator", "tests", "reference_files").resolve()
    covid = shared_data_or_skip("covid_ct_md", "dicom_P002_subset").resolve()
    # A coarse 3 mm plan keeps the real 512 x 512 slices cheap to tile.
    _, work, _ = make_tiny_workdir(tmp_path, num_cases=3, folds=("0",), target_spacing=(3, 3, 3))
    inputs = tmp_path / "real_inputs"
    inputs.mkdir()
    (inputs / "dicom").symlink_to(ts / "example_ct_dicom", target_is_directory=True)
    (inputs / "flipped_ras.nii.gz").symlink_to(ts / "example_ct.nii.gz")
    (inputs / "covid_dicom").symlink_to(covid, target_is_directory=True)  # JPEG-Lossless
    out = tmp_path / "out_real"
    args = ["-i", str(inputs), "-o", str(out), "-w", str(work), *FAST]
    assert cli_predict.main(args) == 0
    reader = sitk.ImageSeriesReader()
    dicom = sitk.ReadImage(reader.GetGDCMSeriesFileNames(str(ts / "example_ct_dicom")))
    _assert_same_grid(out / "dicom.nii.gz", dicom)
    covid_ref = sitk.ReadImage(reader.GetGDCMSeriesFileNames(str(covid)))
    _assert_same_grid(out / "covid_dicom.nii.gz", covid_ref)
    _assert_same_grid(out / "flipped_ras.nii.gz", sitk.ReadImage(str(ts / "example_ct.nii.gz")))


def _bad_inputs(tiny: dict[str, Path], folder: Path) -> dict[str, str]:
    """Two good cases among bad ones; returns bad case -> a word its reason must contain."""
    folder.mkdir()
    for p in sorted(tiny["images"].glob("*.nii.gz"))[:2]:
        shutil.copy(p, folder / p.name)
    (folder / "corrupt_0000.nii.gz").write_bytes(b"not an image")
    nan = np.zeros((6, 20, 20), np.float32)
    nan[2, 3, 4] = np.nan
    write_volume(nan, folder / "nans_0000.nii.gz")
    sitk.WriteImage(sitk.Image([20, 20], sitk.sitkInt16), str(folder / "flat_0000.nii.gz"))
    write_volume(np.zeros((6, 20, 20), np.int16), folder / "second_channel_0001.nii.gz")
    (folder / "no_dicom").mkdir()
    (folder / "no_dicom" / "junk.txt").write_text("not DICOM", encoding="utf-8")
    return {
        "corrupt": "corrupt",
        "nans": "NaN",
        "flat": "2D",
        "second_channel": "channels",
        "no_dicom": "DICOM",
    }


def test_bad_inputs_are_reported_and_skipped(
    tiny: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    inputs, out = tiny["root"] / "bad_inputs", tiny["root"] / "out_bad"
    bad = _bad_inputs(tiny, inputs)
    assert _predict(tiny, inputs, out) == EXIT_SOME_FAILED
    err = capsys.readouterr().err
    assert "Traceback" not in err
    failures = {r["case"]: r for r in _rows(out / "failures.csv")}
    assert set(failures) == set(bad)
    for case, word in bad.items():
        assert word in failures[case]["reason"], failures[case]
        assert Path(failures[case]["file"]).name.startswith(case)
        assert case in err
    assert [r["case"] for r in _rows(out / "diagnoses.csv")] == ["case_000", "case_001"]
    assert sorted(p.name for p in out.glob("*.nii.gz")) == ["case_000.nii.gz", "case_001.nii.gz"]
    # Fixing the folder and continuing predicts only what is missing, and clears failures.
    for case in bad:
        for p in inputs.glob(f"{case}*"):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    shutil.copy(tiny["images"] / "case_002_0000.nii.gz", inputs)
    assert _predict(tiny, inputs, out, "--continue") == 0
    assert [r["case"] for r in _rows(out / "diagnoses.csv")] == [
        "case_000",
        "case_001",
        "case_002",
    ]
    assert not (out / "failures.csv").exists()


def test_background_writing_fails_only_the_case_whose_write_failed(
    tiny: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outputs are written while the next case is predicted: a write that raises fails its
    own case (recorded, named), the cases before and after it are complete and equal to
    those of a run that predicts each case alone."""
    alone = tiny["root"] / "out_alone"
    for image in sorted(tiny["images"].glob("case_*_0000.nii.gz")):
        single = tiny["root"] / "single_inputs" / image.name.removesuffix("_0000.nii.gz")
        single.mkdir(parents=True)
        shutil.copy(image, single)
        assert _predict(tiny, single, alone) == 0
    real_write = case_writing.write_case

    def flaky_write(output_dir: Path, case_id: str, *args, **kwargs) -> None:
        if case_id == "case_001":
            raise OSError("disk full (simulated)")
        real_write(output_dir, case_id, *args, **kwargs)

    monkeypatch.setattr(case_writing, "write_case", flaky_write)
    out = tiny["root"] / "out_flaky_write"
    assert _predict(tiny, tiny["images"], out) == EXIT_SOME_FAILED
    failures = _rows(out / "failures.csv")
    assert [r["case"] for r in failures] == ["case_001"]
    assert "disk full (simulated)" in failures[0]["reason"]
    assert [r["case"] for r in _rows(out / "diagnoses.csv")] == ["case_000", "case_002"]
    for case in ("case_000", "case_002"):
        ours = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{case}.nii.gz")))
        ref = sitk.GetArrayFromImage(sitk.ReadImage(str(alone / f"{case}.nii.gz")))
        np.testing.assert_array_equal(ours, ref)
    assert not (out / "case_001.nii.gz").exists()


def test_images_that_cannot_be_scans_are_refused_small_real_ones_predicted(
    tiny: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    inputs, out = tiny["root"] / "size_inputs", tiny["root"] / "out_size"
    img, _ = make_case(np.random.default_rng(7), "CAP", (12, 40, 40))
    write_volume(np.full((1, 1, 1), -1000, np.int16), inputs / "one_voxel.nii.gz")
    write_volume(img[:2], inputs / "two_slices.nii.gz")  # a 3D model needs 3
    write_volume(img[:, :, :5], inputs / "sliver.nii.gz")  # 5 pixels across
    write_volume(img, inputs / "metres.nii.gz", (0.0025, 0.0008, 0.0008))
    write_volume(img, inputs / "micrometres.nii.gz", (2500.0, 800.0, 800.0))
    # Smaller than the patch (12, 32, 32) along every axis: padded and predicted.
    write_volume(img[3:7, 10:22, 12:22], inputs / "small_real.nii.gz", (2.5, 0.8, 0.8))
    assert _predict(tiny, inputs, out, "-f", "0") == EXIT_SOME_FAILED
    assert "Traceback" not in capsys.readouterr().err
    reasons = {r["case"]: r["reason"] for r in _rows(out / "failures.csv")}
    assert sorted(reasons) == ["metres", "micrometres", "one_voxel", "sliver", "two_slices"]
    for case in ("one_voxel", "two_slices", "sliver"):
        assert f"{case}.nii.gz: image of" in reasons[case] and "too small" in reasons[case]
    assert "below 0.01 mm" in reasons["metres"] and "above 100 mm" in reasons["micrometres"]
    _assert_same_grid(out / "small_real.nii.gz", sitk.ReadImage(str(inputs / "small_real.nii.gz")))


def test_continue_skips_complete_cases_and_redoes_incomplete_ones(
    tiny: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tiny["root"] / "out_continue"
    options = PredictOptions(use_tta=False, step_fraction=1.0, resume=True)
    first = run_prediction(tiny["images"], out, tiny["work"], options)
    assert first.predicted == ["case_000", "case_001", "case_002"] and not first.skipped
    (out / "case_001.json").unlink()  # as if killed before the record was written
    (out / ".tmp_abc.nii.gz").write_bytes(b"half")
    calls = record_predicted_cases(monkeypatch)
    second = run_prediction(tiny["images"], out, tiny["work"], options)
    assert calls == ["case_001"] and second.skipped == ["case_000", "case_002"]
    assert not list(out.glob(".tmp_*"))
    # Asking for more outputs than the earlier run wrote makes every case incomplete.
    calls.clear()
    more = PredictOptions(use_tta=False, step_fraction=1.0, resume=True, save_probabilities=True)
    run_prediction(tiny["images"], out, tiny["work"], more)
    assert calls == ["case_000", "case_001", "case_002"]


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    import SimpleITK as sitk
    import torch
    from autojoint.cli import predict

    torch.set_num_threads(1)  # as in the parent test process (see conftest.py)

    real_write = sitk.WriteImage
    written = []

    def write_then_die(image, path, *args, **kwargs):
        real_write(image, path, *args, **kwargs)
        written.append(path)
        if len(written) == 3:  # third mask: its temp file exists, the rename never happens
            os.kill(os.getpid(), signal.SIGKILL)

    sitk.WriteImage = write_then_die
    sys.exit(predict.main(sys.argv[1:]))
    """
)


def test_killed_run_resumes_to_the_same_outputs(tiny: dict[str, Path]) -> None:
    inputs = tiny["root"] / "five_cases"
    inputs.mkdir()
    rng = np.random.default_rng(9)
    for i in range(5):
        img, _ = make_case(rng, CLASSES[i % 3], (10, 32, 32))
        write_volume(img, inputs / f"k{i}_0000.nii.gz")
    killed, clean = tiny["root"] / "out_killed", tiny["root"] / "out_clean"
    args = ["-i", str(inputs), "-w", str(tiny["work"]), *FAST]
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, *args, "-o", str(killed)],
        check=False,
        capture_output=True,
        encoding="utf-8",
        errors="replace",
    )
    assert proc.returncode == -9, proc.stderr
    assert list(killed.glob(".tmp_*")), "the kill should leave a temp file behind"
    assert sorted(p.name for p in killed.glob("*.json")) == ["k0.json", "k1.json"]
    assert cli_predict.main([*args, "-o", str(killed), "--continue"]) == 0
    assert cli_predict.main([*args, "-o", str(clean)]) == 0
    names = sorted(p.name for p in killed.iterdir())
    assert names == sorted(p.name for p in clean.iterdir())
    assert not [n for n in names if n.startswith(".")]
    for name in names:
        a, b = killed / name, clean / name
        if name.endswith(".nii.gz"):
            np.testing.assert_array_equal(
                sitk.GetArrayFromImage(sitk.ReadImage(str(a))),
                sitk.GetArrayFromImage(sitk.ReadImage(str(b))),
            )
        else:
            assert a.read_text(encoding="utf-8") == b.read_text(encoding="utf-8"), name


def test_verbose_prints_the_timing_breakdown(
    tiny: dict[str, Path], caplog: pytest.CaptureFixture
) -> None:
    out = tiny["root"] / "out_verbose"
    with caplog.at_level("INFO"):
        assert _predict(tiny, tiny["images"], out, "-f", "0", "-v") == 0
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("timing")]
    assert len(lines) == 4  # three cases and the mean
    for stage in ("read", "preprocess", "network", "resample", "write"):
        assert all(f"{stage} " in line for line in lines)


def test_segmentation_only_plan_writes_volumes_not_diagnoses(tmp_path: Path) -> None:
    raw, work, _ = make_tiny_workdir(tmp_path, num_cases=2, folds=("all",), with_diagnoses=False)
    out = tmp_path / "out"
    args = ["-i", str(raw / "imagesTr"), "-o", str(out), "-w", str(work), *FAST, "--evidence"]
    assert cli_predict.main(args) == 0
    assert not (out / "diagnoses.csv").exists() and not (out / "diagnoses.json").exists()
    rows = _rows(out / "lesion_volumes.csv")
    assert [r["case"] for r in rows] == ["case_000", "case_001"]
    assert float(rows[0]["lung_volume_ml"]) > 0
    assert not list(out.glob("*_evidence*"))  # no classifier, no evidence


def test_unknown_evidence_method_is_refused(tiny: dict[str, Path], capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _predict(tiny, tiny["images"], tiny["root"] / "x", "--evidence", "nope")
    assert exit_info.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err


def test_gradcam_evidence_on_the_input_grid(tiny: dict[str, Path]) -> None:
    """``--evidence gradcam`` writes [0, 1] maps on every input grid, different from CAM."""
    outs = {}
    for method in ("gradcam", "cam"):
        out = tiny["root"] / f"out_{method}"
        assert _predict(tiny, tiny["images"], out, "-f", "0", "--evidence", method) == 0
        outs[method] = out
    for img in sorted(tiny["images"].glob("*_0000.nii.gz")):
        case = img.name[: -len("_0000.nii.gz")]
        ref = sitk.ReadImage(str(img))
        path = outs["gradcam"] / f"{case}_evidence.nii.gz"
        _assert_same_grid(path, ref)
        grad = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
        cam = sitk.GetArrayFromImage(sitk.ReadImage(str(outs["cam"] / f"{case}_evidence.nii.gz")))
        # Scaled to peak 1 on the view; resampling to the input grid may shave the peak.
        assert grad.min() >= 0.0 and 0.5 < grad.max() <= 1.0 + 1e-6
        assert not np.allclose(grad, cam)


def test_checkpoint_choice_loads_that_files_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    raw, work, plan = make_tiny_workdir(tmp_path, num_cases=2, folds=("0", "1"))
    torch.manual_seed(7)  # weights unlike fold 0's final checkpoint (seed 0)
    best = JointNet(plan)
    save_checkpoint(
        fold_dir(work, "0") / "checkpoint_best.pt", net=best, optimizer=None, plan=plan, epoch=3
    )
    dev = torch.device("cpu")
    # Only fold 0 has a best checkpoint: it alone is found by default.
    assert ensemble.available_folds(work, checkpoint="checkpoint_best.pt") == ["0"]
    assert ensemble.available_folds(work) == ["0", "1"]
    (loaded,) = load_ensemble(work, ["0"], dev, checkpoint="checkpoint_best.pt").nets
    (final,) = load_ensemble(work, ["0"], dev).nets
    for name, value in best.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], value)
    assert any(not torch.equal(final.state_dict()[n], v) for n, v in best.state_dict().items())
    with pytest.raises(ValueError, match="unknown checkpoint"):
        load_ensemble(work, ["0"], dev, checkpoint="../checkpoint_final.pt")
    # The CLI: a fold without the chosen checkpoint is a one-line error naming the file.
    args = ["-i", str(raw / "imagesTr"), "-o", str(tmp_path / "out"), "-w", str(work)]
    assert cli_predict.main([*args, "-f", "1", "-chk", "checkpoint_best.pt", *FAST]) == 1
    assert "checkpoint_best.pt" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_predict.main([*args, "--checkpoint", "model.pt"])


def test_checkpoint_of_another_network_layout_is_a_clear_error(tmp_path: Path) -> None:
    _, work, _plan = make_tiny_workdir(tmp_path, num_cases=2, folds=("0",))
    path = fold_dir(work, "0") / "checkpoint_final.pt"
    state = torch.load(path, weights_only=True)
    weights = state["network"]
    name = next(k for k, v in weights.items() if k.endswith("weight") and v.ndim == 5)
    state["network"][name] = state["network"][name][..., :1]  # a kernel of another size
    torch.save(state, path)
    with pytest.raises(ValueError, match="retrain the fold") as info:
        load_ensemble(work, ["0"], torch.device("cpu"))
    assert "checkpoint_final.pt" in str(info.value) and name in str(info.value)
