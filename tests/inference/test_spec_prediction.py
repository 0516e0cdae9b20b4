"""``autojoint_predict --best/--spec`` follows best_configuration.json (its model,
calibration, diagnosis gate and postprocessing, or an ensemble of models), and
``autojoint_ensemble`` averages prediction folders; on a tiny work dir with constructed
validations."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from autojoint.cli import ensemble as cli_ensemble
from autojoint.cli import find_best_configuration as cli_best
from autojoint.cli import predict as cli_predict
from autojoint.evaluation.calibration import apply_temperature
from autojoint.io.best_configuration import (
    DiagnosisGate,
    ModelRef,
    PostprocessingRule,
    read_best_configuration,
    write_best_configuration,
)
from autojoint.io.workdir import fold_dir
from tests.evaluation.cv_fixtures import write_fold
from tests.inference.tiny_workdir import make_tiny_workdir

FOLDS = ("0", "1", "2", "3", "4")
FAST = ["--no-tta", "--step-size", "1", "-f", "0"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Five untrained folds of ``default`` and of ``other`` (copies, other seeds' weights are
    not needed), validations saying ``default`` is right and over-confident, and an input
    folder of one case."""
    root = tmp_path_factory.mktemp("spec")
    raw, work, plan = make_tiny_workdir(root, num_cases=5, folds=FOLDS)
    for fold in FOLDS:
        target = fold_dir(work, fold, "fullres", "other")
        target.mkdir(parents=True)
        shutil.copy(fold_dir(work, fold) / "checkpoint_final.pt", target)
    rng = np.random.default_rng(0)
    for i, fold in enumerate(FOLDS):
        cases = []
        for k in range(4):
            truth = plan.classes[(i + k) % 3]
            # right 3 times in 4 with probability 0.99: over-confident, so T > 1
            pick = truth if k < 3 else plan.classes[(i + k + 1) % 3]
            dx = [0.99 if c == pick else 0.005 for c in plan.classes]
            cases.append({"case": f"c{i}_{k}", "diagnosis_ref": truth, "diagnosis": dx})
        write_fold(work, fold, cases, plan.labels, plan.classes, with_checkpoint=False)
        flat = [{**c, "diagnosis": rng.dirichlet([1, 1, 1]).tolist()} for c in cases]
        write_fold(work, fold, flat, plan.labels, plan.classes, variant="other")
    inputs = root / "inputs"
    inputs.mkdir()
    shutil.copy(raw / "imagesTr" / "case_000_0000.nii.gz", inputs / "case_000_0000.nii.gz")
    return {"root": root, "work": work, "inputs": inputs}


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_best_predicts_with_calibration(setup: dict[str, Path]) -> None:
    work, out = setup["work"], setup["root"] / "out_best"
    assert cli_best.main(["-w", str(work)]) == 0
    spec = read_best_configuration(work / "best_configuration.json")
    assert spec.members == (ModelRef("default", "fullres"),) and spec.temperature is not None
    assert spec.temperature > 1.0  # the validation was over-confident
    args = ["-i", str(setup["inputs"]), "-o", str(out), "-w", str(work), "--best", *FAST]
    assert cli_predict.main(args) == 0
    record = json.loads((out / "case_000.json").read_text(encoding="utf-8"))
    classes = list(record["probabilities"])
    expected = apply_temperature(np.array(list(record["probabilities"].values())), spec.temperature)
    got = [record["calibrated_probabilities"][c] for c in classes]
    np.testing.assert_allclose(got, expected, atol=1e-6)
    header = (out / "diagnoses.csv").read_text(encoding="utf-8").splitlines()[0].split(",")
    p_cols = [f"p_{c}" for c in classes]
    assert header[2 : 2 + len(classes)] == p_cols  # the contract's columns keep their place
    assert header[-len(classes) :] == [f"pcal_{c}" for c in classes]
    row = _rows(out / "diagnoses.csv")[0]
    assert float(row[f"pcal_{classes[0]}"]) == pytest.approx(got[0], abs=1e-6)


def test_plain_predict_reads_the_models_calibration(setup: dict[str, Path]) -> None:
    work, out = setup["work"], setup["root"] / "out_plain"
    assert cli_best.main(["-w", str(work)]) == 0  # writes WORK/calibration.json
    args = ["-i", str(setup["inputs"]), "-o", str(out), "-w", str(work), *FAST]
    assert cli_predict.main(args) == 0
    assert "calibrated_probabilities" in json.loads(
        (out / "case_000.json").read_text(encoding="utf-8")
    )


def test_ensemble_spec_and_autojoint_ensemble(setup: dict[str, Path]) -> None:
    work, root = setup["work"], setup["root"]
    assert cli_best.main(["-w", str(work)]) == 0
    spec = read_best_configuration(work / "best_configuration.json")
    members = (ModelRef("default", "fullres"), ModelRef("other", "fullres"))
    remove_all = PostprocessingRule("ground_glass", 1, 1e12, 0.5, 0.6)
    ensemble_spec = dataclasses.replace(spec, members=members, postprocessing=(remove_all,))
    spec_path = root / "ensemble.json"
    write_best_configuration(spec_path, ensemble_spec)
    out = root / "out_ens"
    args = ["-i", str(setup["inputs"]), "-o", str(out), "-w", str(work), "--spec", str(spec_path)]
    assert cli_predict.main([*args, *FAST]) == 0
    member_dirs = [out / "members" / "default__fullres", out / "members" / "other__fullres"]
    records = [json.loads((d / "case_000.json").read_text(encoding="utf-8")) for d in member_dirs]
    record = json.loads((out / "case_000.json").read_text(encoding="utf-8"))
    for c, p in record["probabilities"].items():
        assert p == pytest.approx(np.mean([r["probabilities"][c] for r in records]), abs=1e-6)
    assert "calibrated_probabilities" in record
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "case_000.nii.gz")))
    assert not np.any(mask == 1)  # the rule removed every ground-glass component

    plain = root / "out_cli_ensemble"
    cli_args = ["-i", *map(str, member_dirs), "-o", str(plain), "-w", str(work)]
    assert cli_ensemble.main(cli_args) == 0
    mean = sum(
        np.load(d / "case_000_probabilities.npz")["probabilities"].astype(np.float32)
        for d in member_dirs
    )
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(plain / "case_000.nii.gz")))
    np.testing.assert_array_equal(mask, np.argmax(mean, axis=0))
    assert (plain / "diagnoses.csv").is_file()


def test_bad_spec_and_flags_are_refused(setup: dict[str, Path], capsys) -> None:
    work, root = setup["work"], setup["root"]
    bad = root / "bad.json"
    bad.write_text('{"schema_version": 1, "members": []}', encoding="utf-8")
    args = ["-i", str(setup["inputs"]), "-o", str(root / "o"), "-w", str(work)]
    assert cli_predict.main([*args, "--spec", str(bad), *FAST]) == 1
    assert "bad.json" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_predict.main([*args, "--best", "--variant", "other"])
    assert cli_best.main(["-w", str(work)]) == 0
    spec = read_best_configuration(work / "best_configuration.json")
    foreign = root / "foreign_gate.json"
    gate = DiagnosisGate(("healthy",), 0.5, 0.6, 1, 0)
    write_best_configuration(foreign, dataclasses.replace(spec, diagnosis_gate=gate))
    assert cli_predict.main([*args, "--spec", str(foreign), *FAST]) == 1
    err = capsys.readouterr().err
    assert "foreign_gate.json" in err and "healthy" in err and "find_best_configuration" in err
    empty = root / "empty_gate.json"
    data = json.loads(foreign.read_text(encoding="utf-8"))
    data["diagnosis_gate"]["classes"] = []
    empty.write_text(json.dumps(data), encoding="utf-8")
    assert cli_predict.main([*args, "--spec", str(empty), *FAST]) == 1
    assert "'diagnosis_gate' names no class" in capsys.readouterr().err


def _mask(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def test_diagnosis_gate_empties_only_the_gated_diagnosis(setup: dict[str, Path]) -> None:
    work, root = setup["work"], setup["root"]
    assert cli_best.main(["-w", str(work)]) == 0
    spec = read_best_configuration(work / "best_configuration.json")
    assert spec.diagnosis_gate is None  # the constructed validations hold no masks
    args = ["-i", str(setup["inputs"]), "-w", str(work), *FAST]
    plain = root / "out_gate_none"
    assert (
        cli_predict.main([*args, "-o", str(plain), "--spec", str(work / "best_configuration.json")])
        == 0
    )
    called = json.loads((plain / "case_000.json").read_text(encoding="utf-8"))["diagnosis"]
    reference = _mask(plain / "case_000.nii.gz")
    assert reference.any(), "the untrained net must predict some lesion for this test"
    classes = list(
        json.loads((plain / "case_000.json").read_text(encoding="utf-8"))["probabilities"]
    )
    others = tuple(c for c in classes if c != called)
    ensemble = (ModelRef("default", "fullres"), ModelRef("other", "fullres"))
    for name, members, gated in (
        ("other_class", spec.members, others),
        ("called_class", spec.members, (called,)),
        ("ensemble_all", ensemble, tuple(classes)),
    ):
        gate = DiagnosisGate(gated, 0.5, 0.6, 1, 0)
        spec_path = root / f"gate_{name}.json"
        write_best_configuration(
            spec_path, dataclasses.replace(spec, members=members, diagnosis_gate=gate)
        )
        out = root / f"out_gate_{name}"
        assert cli_predict.main([*args, "-o", str(out), "--spec", str(spec_path)]) == 0
        record = json.loads((out / "case_000.json").read_text(encoding="utf-8"))
        mask = _mask(out / "case_000.nii.gz")
        if record["diagnosis"] in gated:
            assert not mask.any() and record["mask_emptied_by_diagnosis"] == record["diagnosis"]
            assert record["volumes"]["volume_ml_lesion"] == 0.0
        else:
            np.testing.assert_array_equal(mask, reference)
            assert "mask_emptied_by_diagnosis" not in record
