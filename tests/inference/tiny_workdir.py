"""A tiny planned work directory with untrained folds: enough to test what the predictor
does with any network (geometry, ensembling, outputs, robustness) in a second; and a
record of which cases the predictor really predicts."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from autojoint.cli import predict as cli_predict
from autojoint.cli.common import EXIT_SOME_FAILED
from autojoint.inference import predictor
from autojoint.io.workdir import fold_dir
from autojoint.networks.joint_net import JointNet
from autojoint.pipeline import plan_and_preprocess
from autojoint.planning.schema import Plan
from autojoint.runtime.checkpoint import TrainingRecord, save_checkpoint
from tests.synthetic import make_raw_dataset, make_raw_dataset_2d

# A case name from a file name, with characters that HTML and URLs treat specially.
ODD_CASE = "p&1 #<b>"


def make_tiny_workdir(
    root: Path,
    *,
    num_cases: int = 4,
    folds: tuple[str, ...] = ("0", "1"),
    with_diagnoses: bool = True,
    target_spacing: tuple[float, float, float] | None = None,
    is_2d: bool = False,
) -> tuple[Path, Path, Plan]:
    """``(raw_dir, work_dir, plan)``: a synthetic raw dataset, its plan, and one randomly
    initialised checkpoint per fold (seed = fold index, so folds differ). The checkpoints'
    plan (what the predictor uses) has a narrow network and, if given, ``target_spacing``.
    ``is_2d``: a dataset of 2D slices (with diagnoses), whose plan is the ``2d`` one."""
    if is_2d:
        raw = make_raw_dataset_2d(root / "raw", num_cases=num_cases)
    else:
        raw = make_raw_dataset(root / "raw", num_cases=num_cases, with_diagnoses=with_diagnoses)
    work = root / "work"
    plan = plan_and_preprocess(raw, work, preprocess=False)
    # Narrow the network (4 channels at full resolution): only shapes matter here, and the
    # planned width would make each tile cost a second on a busy 2-core machine.
    stages = plan.topology.num_stages
    narrow = tuple(min(4 * 2**s, 16) for s in range(stages))
    plan = replace(plan, topology=replace(plan.topology, features_per_stage=narrow))
    if target_spacing is not None:  # e.g. coarse, to predict real 512x512 scans quickly
        plan = replace(plan, target_spacing=target_spacing)
    for i, fold in enumerate(folds):
        torch.manual_seed(i)
        net = JointNet(plan)
        save_checkpoint(
            fold_dir(work, fold, plan.configuration) / "checkpoint_final.pt",
            net=net,
            optimizer=None,
            plan=plan,
            epoch=0,
            extra=TrainingRecord(fold=fold),
        )
    return raw, work, plan


def record_predicted_cases(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids of the cases ``predictor.predict_case`` runs on from now on, in order (the
    list fills as they are predicted; ``--continue`` tests check what was skipped)."""
    calls: list[str] = []
    real = predictor.predict_case

    def counting(case, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(case.case_id)
        return real(case, *args, **kwargs)

    monkeypatch.setattr(predictor, "predict_case", counting)
    return calls


def predict_with_report(root: Path) -> dict[str, Path]:
    """``autojoint_predict --report`` (fast settings) on a tiny work directory of three
    cases, one named :data:`ODD_CASE`, and a corrupt file (so the run exits 6).

    Returns:
        ``root``, ``work`` (the work directory), ``inputs`` and ``out`` folders.
    """
    raw, work, _ = make_tiny_workdir(root, num_cases=3)
    inputs = root / "inputs"
    inputs.mkdir()
    for name, source in (
        ("case_000", "case_000"),
        ("case_001", "case_001"),
        (ODD_CASE, "case_002"),
    ):
        shutil.copy(raw / "imagesTr" / f"{source}_0000.nii.gz", inputs / f"{name}_0000.nii.gz")
    (inputs / "broken_0000.nii.gz").write_bytes(b"not an image")
    out = root / "out"
    args = ["-i", str(inputs), "-o", str(out), "-w", str(work), "--no-tta", "--step-size", "1"]
    code = cli_predict.main([*args, "--report"])
    if code != EXIT_SOME_FAILED:
        raise AssertionError(
            f"autojoint_predict --report exited {code}, expected {EXIT_SOME_FAILED}"
        )
    return {"root": root, "work": work, "inputs": inputs, "out": out}
