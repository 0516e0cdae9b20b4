"""Peer workload 2: 3D lesions with diagnoses, autojoint's joint model vs nnU-Net + a
two-step diagnosis, 5-fold cross-validation on the demo data (issue 21).

    python -m benchmarks.peers.joint3d --out OUT [--nnunet-python PY] [--num-cases 60]
        [--folds 0 1 2 3 4] [--epochs 16] [--iterations 25] [--threads 1]
        [--gpu-memory-gb 1] [--autojoint-optimizer adam] [--autojoint-augmentation light]
        [--records DIR] [--report-only]

Data: ``--num-cases`` synthetic chest CTs of the demo generator with scripts/demo.sh's
geometry (100 mm field of view, 100 mm extent, seed 0): balanced COVID-19 / CAP / normal
diagnoses, masks ground-glass (1) / consolidation (2), no lung masks (the generator writes
none). Both tools cross-validate on the same split: autojoint's stratified ``splits.json``
written as nnU-Net's ``splits_final.json`` (:func:`layout.write_nnunet_splits`).

Plans: each tool's own planner for the same GPU memory, ``--gpu-memory-gb`` (default 1).
nnU-Net's 8 GB default was measured first (10 demo cases, 3 iterations, one thread each,
side by side on the shared 2-core machine): nnU-Net 3d_fullres patch 56x128x128 batch 2
took about 115 s per iteration, autojoint (patch 32x64x96 batch 2) about 55 s, i.e. some
11 h for one fold's 400 iterations of nnU-Net. At 1 GB: nnU-Net 40x80x80 batch 2, about
33 s; autojoint 24x48x80 batch 2, 13-22 s (training steps only, the machine shared with
other runs at a load of 5-7; the table reports each run's own times). So both are planned
for 1 GB (nnU-Net ``-gpu_memory_target 1 -overwrite_plans_name nnUNetPlans_1GB``), as the
table header states.

Training: per fold, both tools side by side, ``--threads`` each, the same number of
training iterations and of validation batches per epoch, each tool's DEFAULT recipe (SGD
and its full augmentation, for nnU-Net and autojoint alike): the demo's Adam + light
augmentation train better at this budget (docs/training.md) but the default SGD recipe
does train (lesion Dice 0.45 at 200 steps), so the defaults are kept;
``--autojoint-optimizer`` / ``--autojoint-augmentation`` switch to the demo's and the
header says so. Each tool then predicts the fold's validation cases with its own predictor
(mirroring on, final checkpoint), both predictors side by side.

Scores, both tools through autojoint's evaluator (``evaluate_folder``, the dataset's label
names): Dice per class and for the lesion union, lesion precision and recall, and the
diagnosis (accuracy, macro-AUC, confusion). Diagnoses: autojoint's joint model writes
them (``diagnoses.csv``); for nnU-Net the two-step pipeline of :mod:`joint3d_features`
(lesion/lung volume, component count, consolidation fraction, peripheral ratio ->
balanced logistic regression). The classifier is fitted on the fold's training cases'
REFERENCE masks and applied to nnU-Net's predicted masks of the validation cases. Fitting
on nnU-Net's predictions of its own training cases instead would need a sliding-window
prediction of every training case in every fold (4x the prediction cost) and still not
match validation-time errors: those predictions are in-sample, nearly as clean as the
references. The reference-mask fit is the classifier a user gets from the annotations they
already have; the row "reference masks + two-step" applies it to the validation cases'
reference masks, the two-step's ceiling with a perfect segmentation; the row "autojoint
masks + two-step" applies it to autojoint's predicted masks, which separates a diagnosis
gap caused by our masks from one caused by our classification head (added to rows cached
before it from the predictions in ``OUT``).

The diagnosis gate (:mod:`joint3d_gate`): two more rows empty the mask of each validation
case called a class whose every training case is lesion-free, autojoint by its own head,
nnU-Net by its two-step diagnosis (added to cached rows from the predictions in ``OUT``).

Rows are cached per (tool, fold) under ``OUT/rows`` (or ``--records DIR``: the repository
keeps finished folds in ``benchmarks/results/joint3d/``); a killed run resumes (trainings
from their latest checkpoints). Writes ``OUT/joint3d_table.md``, ``OUT/joint3d.json`` and
``OUT/joint3d_curves.png``; differences autojoint - peer with a paired bootstrap interval
over folds (:func:`benchmarks.stats.paired_bootstrap_ci`).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from autojoint.data.augmentation import AUGMENTATION_PRESETS
from autojoint.io.dataset import RawDataset, load_raw_dataset
from autojoint.io.files import atomic_write, read_json, write_json
from autojoint.io.workdir import PLANS_FILE, SPLITS_FILE
from autojoint.planning.schema import Plan
from autojoint.runtime.checkpoint import read_checkpoint
from autojoint.training.config import TrainerConfig
from autojoint.training.schedule import OPTIMIZERS
from autojoint.training.splits import fold_cases
from benchmarks.peers.common import (
    Tools,
    cached_row,
    find_nnunet_python,
    run_logged,
    start_logged,
    store_row,
    tool_env,
    wait_all,
    wait_all_timed,
)
from benchmarks.peers.joint3d_features import MIN_COMPONENT_VOXELS, case_features
from benchmarks.peers.joint3d_gate import gated_row
from benchmarks.peers.joint3d_scoring import (
    score,
    training_record,
    two_step,
    write_diagnoses_csv,
)
from benchmarks.peers.layout import (
    dataset_name,
    nnunet_folders,
    to_nnunet_raw,
    write_nnunet_splits,
)
from benchmarks.peers.tables import curves_figure, markdown_table, mean_sd
from benchmarks.stats import paired_bootstrap_ci

DATASET_ID = 502
DATASET_NAME = "Joint3D"
CONFIGURATION = "3d_fullres"
NNUNET_DEFAULT_GB = 8.0
FOV_MM = 100.0
Z_EXTENT_MM = 100.0
# 10 mm subpleural band of a full-size chest (340 mm field of view) scaled to the demo's
# 100 mm miniature; about the generator's own band (outer 25% of the lung's in-slice radius)
PERIPHERAL_MM = 3.0
TOOLS = {"autojoint": "autojoint (joint model)", "nnunet": "nnU-Net + two-step diagnosis"}
CEILING = "reference masks + two-step (ceiling)"
AJ_TWO_STEP = "autojoint masks + two-step"
GATED = {
    "autojoint": "autojoint, masks gated by its diagnosis",
    "nnunet": "nnU-Net, masks gated by the two-step diagnosis",
}
DIAGNOSIS_COLUMNS = ("accuracy", "macro-AUC")
COLUMNS = (
    "Dice lesion",
    "Dice GGO",
    "Dice consolidation",
    "precision lesion",
    "recall lesion",
    "accuracy",
    "macro-AUC",
    "train s/iteration",
    "predict s/case",
)


def _link(target: Path, link: Path) -> None:
    """A relative symlink ``link -> target`` (replaced if present)."""
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(os.path.relpath(target.resolve(), link.parent.resolve()))


def plans_name(gpu_memory_gb: float) -> str:
    """nnU-Net's plans identifier: its default name at its 8 GB default, else
    ``nnUNetPlans_1GB`` (so the default plans are never overwritten)."""
    if gpu_memory_gb == NNUNET_DEFAULT_GB:
        return "nnUNetPlans"
    return f"nnUNetPlans_{gpu_memory_gb:g}GB"


def prepare(out: Path, tools: Tools, args: argparse.Namespace) -> dict[str, Any]:
    """Generate, link, plan and preprocess both tools, fix the split (cached in
    ``OUT/prepare.json``): planning seconds, both plans and the folds."""
    setup = {"num_cases": args.num_cases, "gpu_memory_gb": args.gpu_memory_gb}
    done = out / "prepare.json"
    record = cached_row(done, setup)
    if record is not None:
        return record
    raw = out / "raw"
    if not (raw / "dataset.json").is_file():
        from dataset_conversion.generate_demo import generate_dataset

        generate_dataset(
            raw, num_train=args.num_cases, seed=0, fov_mm=FOV_MM, z_extent_mm=Z_EXTENT_MM
        )
    folders = nnunet_folders(out / "nnunet", 0)
    to_nnunet_raw(raw, folders.raw, DATASET_ID, DATASET_NAME)
    env = tool_env(args.threads, folders.env())
    env.pop("nnUNet_n_proc_DA")  # its planner sets torch threads from it: 0 is refused
    target = []
    if args.gpu_memory_gb != NNUNET_DEFAULT_GB:
        target = [
            "-gpu_memory_target",
            f"{args.gpu_memory_gb:g}",
            "-overwrite_plans_name",
            plans_name(args.gpu_memory_gb),
        ]
    work = out / "autojoint" / "work"
    seconds = {
        "nnunet": run_logged(
            tools.nnunet_plan(
                DATASET_ID,
                CONFIGURATION,
                threads=args.threads,
                extra=["-npfp", str(args.threads), *target],
            ),
            out / "logs" / "nnunet_plan.log",
            env,
        ),
        "autojoint": run_logged(
            tools.autojoint_plan(raw, work, gpu_memory_gb=args.gpu_memory_gb, threads=args.threads),
            out / "logs" / "autojoint_plan.log",
            tool_env(args.threads),
        ),
    }
    fold_cases(work, "0")  # writes autojoint's splits.json, the one split of both tools
    splits = read_json(work / SPLITS_FILE)
    nn_dataset = folders.preprocessed / dataset_name(DATASET_ID, DATASET_NAME)
    write_nnunet_splits(splits, nn_dataset)
    nn_plan = read_json(nn_dataset / f"{plans_name(args.gpu_memory_gb)}.json")
    nn_conf = nn_plan["configurations"][CONFIGURATION]  # nnU-Net's file, not ours
    aj_plan = Plan.load(work / PLANS_FILE)
    plans = {
        "nnunet": {"patch": list(nn_conf["patch_size"]), "batch": int(nn_conf["batch_size"])},
        "autojoint": {
            "patch": list(aj_plan.patch_size),
            "batch": int(aj_plan.batch_size),
            "detach_lesion_input": aj_plan.network.detach_lesion_input,
        },
    }
    return store_row(done, setup, {"seconds": seconds, "plans": plans, "splits": splits})


def reference_features(out: Path, dataset: RawDataset, args: argparse.Namespace) -> dict:
    """Features of every case's reference mask (cached in ``OUT/features/reference.json``)."""
    setup = {
        "num_cases": args.num_cases,
        "peripheral_mm": args.peripheral_mm,
        "min_component_voxels": MIN_COMPONENT_VOXELS,
    }
    path = out / "features" / "reference.json"
    record = cached_row(path, setup)
    if record is None:
        features = {
            case.case_id: case_features(
                case.image_paths[0], case.label_path, peripheral_mm=args.peripheral_mm
            )
            for case in dataset.cases
            if case.label_path is not None  # the generator writes one for every case
        }
        record = store_row(path, setup, {"features": features})
    return record["features"]


def fold_inputs(out: Path, dataset: RawDataset, val: list[str], fold: int) -> Path:
    """``OUT/folds/fold_K``: links to the validation images and masks, and their
    reference ``diagnoses.csv``, the input of both predictors and of the evaluator."""
    folder = out / "folds" / f"fold_{fold}"
    cases = {c.case_id: c for c in dataset.cases}
    for case_id in val:
        case = cases[case_id]
        if case.label_path is None:
            raise SystemExit(f"{out / 'raw'}: {case_id} has no mask; regenerate the data")
        _link(case.image_paths[0], folder / "imagesVal" / case.image_paths[0].name)
        _link(case.label_path, folder / "labelsVal" / case.label_path.name)
    rows = [[c, str(cases[c].diagnosis)] for c in val]
    write_diagnoses_csv(folder / "diagnoses.csv", rows, ["case", "diagnosis"])
    return folder


def _nnunet_model(out: Path, plans: str) -> Path:
    folders = nnunet_folders(out / "nnunet", 0)
    return folders.model(dataset_name(DATASET_ID, DATASET_NAME), CONFIGURATION, plans)


def _autojoint_recipe(args: argparse.Namespace) -> list[str]:
    """autojoint_train flags of a deviation from the library's default recipe."""
    flags = []
    if args.autojoint_optimizer is not None:
        flags += ["--optimizer", args.autojoint_optimizer]
    if args.autojoint_augmentation is not None:
        flags += ["--augmentation", args.autojoint_augmentation]
    return flags


def train_both(
    out: Path, tools: Tools, fold: int, args: argparse.Namespace, todo: list[str]
) -> None:
    """Train fold ``fold`` with the tools in ``todo`` side by side (one process each)."""
    nn_log = out / "runs" / f"nnunet-fold{fold}" / "train.json"
    work = out / "autojoint" / "work"
    procs, logs = {}, {}
    if "nnunet" in todo and not nn_log.is_file():
        logs["nnunet"] = out / "logs" / f"nnunet_train_fold{fold}.log"
        procs["nnunet"] = start_logged(
            tools.nnunet_train(
                DATASET_ID,
                CONFIGURATION,
                str(fold),
                epochs=args.epochs,
                iterations=args.iterations,
                val_iterations=TrainerConfig().val_iterations,  # autojoint's per-epoch count
                threads=args.threads,
                log=nn_log,
                plans=plans_name(args.gpu_memory_gb),
                resume=True,
            ),
            logs["nnunet"],
            tool_env(args.threads, nnunet_folders(out / "nnunet", 0).env()),
        )
    if "autojoint" in todo and not (work / f"fold_{fold}" / "checkpoint_final.pt").is_file():
        logs["autojoint"] = out / "logs" / f"autojoint_train_fold{fold}.log"
        procs["autojoint"] = start_logged(
            [
                tools.autojoint_command("autojoint_train"),
                str(fold),
                "-w",
                str(work),
                "--epochs",
                str(args.epochs),
                "--iterations-per-epoch",
                str(args.iterations),
                "--num-workers",
                "0",
                "--seed",
                "0",
                "--skip-validation",
                "--checkpoint-every",
                "1",
                "--continue",
                *_autojoint_recipe(args),
            ],
            logs["autojoint"],
            tool_env(args.threads),
        )
    wait_all(procs, logs)


def predict_both(
    out: Path, tools: Tools, fold: int, args: argparse.Namespace, todo: list[str]
) -> dict:
    """Each tool in ``todo`` predicts the fold's validation cases (side by side); returns
    ``{tool: {"folder", "seconds"}}``, seconds = the predictor process's wall time."""
    images = out / "folds" / f"fold_{fold}" / "imagesVal"
    preds = {t: out / "predictions" / f"{t}-fold{fold}" for t in TOOLS}
    marks = {t: out / "predictions" / f"{t}-fold{fold}.wall.json" for t in TOOLS}
    commands = {
        "nnunet": tools.nnunet_predict(
            _nnunet_model(out, plans_name(args.gpu_memory_gb)),
            images,
            preds["nnunet"],
            threads=args.threads,
            folds=(str(fold),),
        ),
        "autojoint": [
            tools.autojoint_command("autojoint_predict"),
            "-i",
            str(images),
            "-o",
            str(preds["autojoint"]),
            "-w",
            str(out / "autojoint" / "work"),
            "-f",
            str(fold),
        ],
    }
    envs = {
        "nnunet": tool_env(args.threads, nnunet_folders(out / "nnunet", 0).env()),
        "autojoint": tool_env(args.threads),
    }
    start = [t for t in todo if not marks[t].is_file()]
    logs = {t: out / "logs" / f"{t}_predict_fold{fold}.log" for t in start}
    started = time.perf_counter()
    procs = {t: start_logged(commands[t], logs[t], envs[t]) for t in start}
    for tool, seconds in wait_all_timed(procs, logs, started).items():
        write_json({"seconds": seconds}, marks[tool])
    return {t: {"folder": preds[t], "seconds": read_json(marks[t])["seconds"]} for t in todo}


def _refuse_other_model(out: Path, fold: int, detach: bool) -> None:
    """Refuse to reuse a fold's trained model whose lesion-input switch is not the row's
    (e.g. the plan was edited after that fold trained): its predictions would be stored
    under the wrong setting."""
    fold_dir = out / "autojoint" / "work" / f"fold_{fold}"
    for name in ("checkpoint_final.pt", "checkpoint_latest.pt"):
        if (fold_dir / name).is_file():
            trained = read_checkpoint(fold_dir / name).plan.network.detach_lesion_input
            if trained != detach:
                raise SystemExit(
                    f"{fold_dir / name} was trained with detach_lesion_input={trained}, the "
                    f"plan now says {detach}: delete {fold_dir} and "
                    f"{out / 'predictions' / f'autojoint-fold{fold}'}* to retrain the fold"
                )
            return


def run_fold(
    out: Path,
    tools: Tools,
    fold: int,
    args: argparse.Namespace,
    setups: dict[str, dict[str, Any]],
    prep: dict[str, Any],
) -> dict[str, dict[str, Any]]:
    """Both tools' cached rows of one fold, computing whatever is missing."""
    cache = _row_paths(_rows_dir(out, args), fold)
    records = cached_rows(cache, setups)
    if all(r is not None for r in records.values()):
        return records  # type: ignore[return-value]
    dataset = load_raw_dataset(out / "raw")
    split = prep["splits"][fold]
    fold_dir = fold_inputs(out, dataset, split["val"], fold)
    todo = [t for t in TOOLS if records[t] is None]  # a cached row is never re-trained
    if "autojoint" in todo:
        _refuse_other_model(out, fold, setups["autojoint"]["autojoint_detach_lesion_input"])
    train_both(out, tools, fold, args, todo)
    preds = predict_both(out, tools, fold, args, todo)
    trained = training_record(
        out / "runs" / f"nnunet-fold{fold}" / "train.json" if "nnunet" in todo else None,
        out / "autojoint" / "work" / f"fold_{fold}" / "training_log.json"
        if "autojoint" in todo
        else None,
        args.epochs * args.iterations,
    )
    for tool in todo:
        folder = preds[tool]["folder"]
        extra: dict[str, Any] = {}
        if tool == "nnunet":
            csv_path, extra["ceiling"] = _two_step_csv(out, dataset, split, tool, fold, args)
        else:
            csv_path = folder / "diagnoses.csv"
            extra["two_step"] = masks_two_step(out, dataset, split, fold, args)
        row = score(
            folder,
            fold_dir / "labelsVal",
            ref_diagnoses_csv=fold_dir / "diagnoses.csv",
            pred_diagnoses_csv=csv_path,
            dataset=dataset,
        )
        row["scores"]["train s/iteration"] = trained[tool]["seconds_per_iteration"]
        row["scores"]["predict s/case"] = preds[tool]["seconds"] / len(split["val"])
        row["curves"] = trained[tool]["curves"]
        records[tool] = store_row(cache[tool], setups[tool], {**row, **extra})
    return records  # type: ignore[return-value]


def _two_step_csv(
    out: Path,
    dataset: RawDataset,
    split: dict[str, list[str]],
    tool: str,
    fold: int,
    args: argparse.Namespace,
) -> tuple[Path, dict[str, Any]]:
    """The two-step diagnoses of ``tool``'s predicted masks of ``fold`` (CSV path) and the
    same classifier's ceiling on the reference masks."""
    csv_path = out / "predictions" / f"{tool}-fold{fold}.two_step.csv"
    ceiling = two_step(
        dataset,
        split,
        reference_features(out, dataset, args),
        out / "predictions" / f"{tool}-fold{fold}",
        peripheral_mm=args.peripheral_mm,
        csv_path=csv_path,
        features_path=out / "features" / f"{tool}-fold{fold}.json",
    )
    return csv_path, ceiling


def masks_two_step(
    out: Path, dataset: RawDataset, split: dict[str, list[str]], fold: int, args: argparse.Namespace
) -> dict[str, Any]:
    """The two-step diagnosis applied to autojoint's predicted masks instead of its own
    classifier: tells a diagnosis gap to the two-step caused by our masks from one caused by
    our classification head. ``{"scores": {"accuracy", "macro-AUC"}, "confusion"}``."""
    csv_path, _ = _two_step_csv(out, dataset, split, "autojoint", fold, args)
    fold_dir = out / "folds" / f"fold_{fold}"
    row = score(
        out / "predictions" / f"autojoint-fold{fold}",
        fold_dir / "labelsVal",
        ref_diagnoses_csv=fold_dir / "diagnoses.csv",
        pred_diagnoses_csv=csv_path,
        dataset=dataset,
    )
    return {
        "scores": {k: row["scores"][k] for k in DIAGNOSIS_COLUMNS},
        "confusion": row["confusion"],
    }


def backfill_masks_two_step(
    out: Path,
    record: dict[str, Any],
    path: Path,
    fold: int,
    prep: dict[str, Any],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """An autojoint row cached before the row ``AJ_TWO_STEP`` existed, with it added from
    the fold's predictions in ``OUT`` (scoring only, no training); unchanged, with a note,
    when ``OUT`` lacks them (``--report-only`` on another machine)."""
    val = prep["splits"][fold]["val"]
    folder = out / "predictions" / f"autojoint-fold{fold}"
    have = (out / "raw").is_dir() and all((folder / f"{c}.nii.gz").is_file() for c in val)
    if not have:
        print(f"fold {fold}: no autojoint predictions in {folder}; row {AJ_TWO_STEP!r} left out")
        return record
    dataset = load_raw_dataset(out / "raw")
    fold_inputs(out, dataset, val, fold)
    extra = masks_two_step(out, dataset, prep["splits"][fold], fold, args)
    setup = record["setup"]
    return store_row(
        path, setup, {k: v for k, v in record.items() if k != "setup"} | {"two_step": extra}
    )


def _diagnoses_csv(out: Path, tool: str, fold: int) -> Path:
    """The diagnoses a user of ``tool`` gets: autojoint's own, nnU-Net's two-step."""
    if tool == "autojoint":
        return out / "predictions" / f"autojoint-fold{fold}" / "diagnoses.csv"
    return out / "predictions" / f"{tool}-fold{fold}.two_step.csv"


def backfill_gated(
    out: Path,
    records: dict[str, dict[str, Any]],
    paths: dict[str, Path],
    fold: int,
    prep: dict[str, Any],
) -> dict[str, dict[str, Any]]:
    """Rows cached before the gated rows (``GATED``) existed, with them added from the
    fold's predictions in ``OUT`` (scoring only, no training); unchanged, with a note, when
    ``OUT`` lacks them (``--report-only`` on another machine)."""
    split = prep["splits"][fold]
    done = dict(records)
    for tool in TOOLS:
        if "gated" in records[tool]:
            continue
        folder = out / "predictions" / f"{tool}-fold{fold}"
        csv_path = _diagnoses_csv(out, tool, fold)
        have = (out / "raw").is_dir() and csv_path.is_file()
        if not (have and all((folder / f"{c}.nii.gz").is_file() for c in split["val"])):
            print(f"fold {fold}: no {tool} predictions in {folder}; row {GATED[tool]!r} left out")
            continue
        dataset = load_raw_dataset(out / "raw")
        fold_dir = fold_inputs(out, dataset, split["val"], fold)
        gated = gated_row(
            dataset,
            split,
            folder,
            csv_path,
            fold_dir / "labelsVal",
            fold_dir / "diagnoses.csv",
            out / "predictions" / f"{tool}-fold{fold}.gated",
        )
        record = records[tool]
        done[tool] = store_row(
            paths[tool],
            record["setup"],
            {k: v for k, v in record.items() if k != "setup"} | {"gated": gated},
        )
    return done


def row_setup(args: argparse.Namespace) -> dict[str, Any]:
    """What every cached row must have been made with (never mixed)."""
    return {
        "num_cases": args.num_cases,
        "epochs": args.epochs,
        "iterations": args.iterations,
        "val_iterations": TrainerConfig().val_iterations,
        "threads": args.threads,
        "gpu_memory_gb": args.gpu_memory_gb,
        "autojoint_optimizer": args.autojoint_optimizer or "default",
        "autojoint_augmentation": args.autojoint_augmentation or "default",
        "peripheral_mm": args.peripheral_mm,
        "min_component_voxels": MIN_COMPONENT_VOXELS,
    }


def _rows_dir(out: Path, args: argparse.Namespace) -> Path:
    return args.records if args.records is not None else out / "rows"


def _row_paths(rows_dir: Path, fold: int) -> dict[str, Path]:
    """Each tool's cached row of ``fold``."""
    return {t: rows_dir / f"{t}-fold{fold}.json" for t in TOOLS}


# autojoint rows cached before their setup recorded the lesion-input switch were trained
# end to end (the default until 2026-12-02)
LEGACY_SETUP = {"autojoint": {"autojoint_detach_lesion_input": False}}


def tool_setups(setup: dict[str, Any], prep: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each tool's row setup: autojoint's also names whether its classifier read the lesion
    map detached (``network.detach_lesion_input`` of the plan it trained with)."""
    detach = bool(prep["plans"]["autojoint"].get("detach_lesion_input", False))
    return {"nnunet": setup, "autojoint": {**setup, "autojoint_detach_lesion_input": detach}}


def cached_rows(paths: dict[str, Path], setups: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each tool's cached row (None where missing), read once."""
    return {t: cached_row(p, setups[t], legacy=LEGACY_SETUP.get(t)) for t, p in paths.items()}


def _with_lesion_input(prep: dict[str, Any], work: Path) -> dict[str, Any]:
    """``prepare.json``'s record with the plan's lesion-input switch (older records lack
    it; a plan from before the switch loads with it off, as it trained): every autojoint
    row records it, so rows of the two settings never mix."""
    detach = Plan.load(work / PLANS_FILE).network.detach_lesion_input
    plans = {**prep["plans"]}
    plans["autojoint"] = {**plans["autojoint"], "detach_lesion_input": detach}
    return {**prep, "plans": plans}


def _with_classes(prep: dict[str, Any], out: Path) -> dict[str, Any]:
    """``prepare.json``'s record with the class names (older ones lack them: read from
    ``OUT/raw``)."""
    if "classes" in prep:
        return prep
    return {**prep, "classes": list(load_raw_dataset(out / "raw").classes)}


def _keep_prepare(out: Path, prep: dict[str, Any], rows_dir: Path) -> dict[str, Any]:
    """``prepare.json`` beside the rows, with the class names, so that ``--report-only``
    rebuilds the table on a machine without ``OUT``.

    Raises:
        SystemExit: the rows' ``prepare.json`` holds other splits or another nnU-Net plan
            (a cached row of one tool would be paired with the other tool's run on other
            cases).
    """
    record = _with_classes(prep, out)
    kept = rows_dir / "prepare.json"
    if rows_dir.resolve() != out.resolve():
        if kept.is_file():
            old = read_json(kept)
            pairs = {
                "splits": (old["splits"], record["splits"]),
                "nnunet": (old["plans"]["nnunet"], record["plans"]["nnunet"]),
            }
            for key, (before, now) in pairs.items():
                if before != now:
                    raise SystemExit(
                        f"{kept} holds other {key} than {out / 'prepare.json'}: its cached "
                        "rows were made on another split or plan; use other --records"
                    )
        write_json(record, kept)
    return record


def _stored_prepare(out: Path, rows_dir: Path) -> dict[str, Any]:
    for path in (rows_dir / "prepare.json", out / "prepare.json"):
        if path.is_file():
            return _with_classes(read_json(path), out)
    raise SystemExit(
        f"--report-only: neither {rows_dir / 'prepare.json'} nor {out / 'prepare.json'} "
        "exists; run without --report-only first"
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every stage, resuming from whatever ``OUT`` already holds; with ``--report-only``
    no training: the table of the requested folds whose rows are all cached."""
    out: Path = args.out.resolve()
    setup = row_setup(args)
    rows_dir = _rows_dir(out, args)
    if args.report_only:
        prep = _stored_prepare(out, rows_dir)
        tools = None
    else:
        tools = Tools(find_nnunet_python(args.nnunet_python))
        prep = _with_lesion_input(prepare(out, tools, args), out / "autojoint" / "work")
        prep = _keep_prepare(out, prep, rows_dir)
    setups = tool_setups(setup, prep)
    names = (*TOOLS.values(), AJ_TWO_STEP, CEILING, *GATED.values())
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    confusion: dict[str, list[list[list[int]]]] = {name: [] for name in rows}
    curves: dict[int, dict[str, dict[str, list[float]]]] = {}
    folds = []
    for fold in args.folds:
        if tools is None:
            records = cached_rows(_row_paths(rows_dir, fold), setups)
            if any(r is None for r in records.values()):
                print(f"fold {fold}: rows missing in {rows_dir}, left out of the table")
                continue
        else:
            records = run_fold(out, tools, fold, args, setups, prep)
        if "two_step" not in records["autojoint"]:
            records["autojoint"] = backfill_masks_two_step(
                out, records["autojoint"], _row_paths(rows_dir, fold)["autojoint"], fold, prep, args
            )
        records = backfill_gated(out, records, _row_paths(rows_dir, fold), fold, prep)
        folds.append(fold)
        for tool, name in GATED.items():
            if "gated" in records[tool]:
                rows[name].append({**records[tool]["gated"]["scores"], "fold": fold})
        if "two_step" in records["autojoint"]:
            two = records["autojoint"]["two_step"]
            rows[AJ_TWO_STEP].append({**two["scores"], "fold": fold})
            confusion[AJ_TWO_STEP].append(two["confusion"])
        for tool, name in TOOLS.items():
            rows[name].append(records[tool]["scores"])
            confusion[name].append(records[tool]["confusion"])
        rows[CEILING].append(records["nnunet"]["ceiling"]["scores"])
        confusion[CEILING].append(records["nnunet"]["ceiling"]["confusion"])
        curves[fold] = {
            "nnU-Net": records["nnunet"]["curves"],
            "autojoint": records["autojoint"]["curves"],
        }
    if not folds:
        raise SystemExit(f"no fold of {args.folds} has both rows in {rows_dir}")
    aj, nn = rows[TOOLS["autojoint"]], rows[TOOLS["nnunet"]]
    bootstrap = {
        "Dice lesion, autojoint - nnU-Net": paired_bootstrap_ci(
            [r["Dice lesion"] for r in aj], [r["Dice lesion"] for r in nn]
        ),
        "accuracy, autojoint - two-step": paired_bootstrap_ci(
            [r["accuracy"] for r in aj], [r["accuracy"] for r in nn]
        ),
    }
    if rows[AJ_TWO_STEP]:  # our head vs the two-step on our own masks, same folds
        joint = dict(zip(folds, aj, strict=True))
        bootstrap[f"accuracy, autojoint - {AJ_TWO_STEP}"] = paired_bootstrap_ci(
            [joint[r["fold"]]["accuracy"] for r in rows[AJ_TWO_STEP]],
            [r["accuracy"] for r in rows[AJ_TWO_STEP]],
        )
    gated = {tool: {r["fold"]: r for r in rows[name]} for tool, name in GATED.items()}
    both = [f for f in folds if all(f in g for g in gated.values())]
    if both:  # the gated tools against each other, and our gated masks against nnU-Net's
        nn_of = dict(zip(folds, nn, strict=True))
        ours = [gated["autojoint"][f]["Dice lesion"] for f in both]
        bootstrap["Dice lesion, autojoint gated - nnU-Net gated"] = paired_bootstrap_ci(
            ours, [gated["nnunet"][f]["Dice lesion"] for f in both]
        )
        bootstrap["Dice lesion, autojoint gated - nnU-Net"] = paired_bootstrap_ci(
            ours, [nn_of[f]["Dice lesion"] for f in both]
        )
    rows = {name: rs for name, rs in rows.items() if rs}
    confusion = {name: c for name, c in confusion.items() if c}
    result = {
        "setup": setup,
        "folds": folds,
        "classes": list(prep["classes"]),
        "prepare": {"seconds": prep["seconds"], "plans": prep["plans"]},
        "rows": rows,
        "confusion": {k: np.sum(v, axis=0).tolist() for k, v in confusion.items()},
        "bootstrap": bootstrap,
        "curves": curves,
    }
    write_json(result, out / "joint3d.json")
    table = render(result)
    atomic_write(out / "joint3d_table.md", lambda fh: fh.write(table))
    curves_figure(
        curves, out / "joint3d_curves.png", iterations_per_epoch=args.iterations, run_name="fold"
    )
    print(table)
    return result


def _recipe_note(setup: dict[str, Any]) -> str:
    opt, aug = setup["autojoint_optimizer"], setup["autojoint_augmentation"]
    if opt == "default" and aug == "default":
        return "each tool's default recipe (SGD, its full augmentation)"
    return (
        f"nnU-Net's default recipe; autojoint DEVIATES from its default: optimizer {opt}, "
        f"augmentation {aug} (the demo's tiny-budget recipe)"
    )


def _lesion_input_note(plan: dict[str, Any]) -> str:
    if plan.get("detach_lesion_input", False):
        return "its classifier reads the lesion map detached, the default since 2026-12-02"
    return "trained end to end: the diagnosis loss reaches the U-Net through the lesion map"


def render(result: dict[str, Any]) -> str:
    """The table (mean ± sd over folds), the bootstrap intervals and summed confusions."""
    s, plans = result["setup"], result["prepare"]["plans"]
    gb = s["gpu_memory_gb"]
    plan_note = (
        f"each tool's own planner for a {gb:g} GB GPU"
        if gb == NNUNET_DEFAULT_GB
        else (
            f"each tool's own planner for a {gb:g} GB GPU instead of nnU-Net's 8 GB default "
            "(at 8 GB one training iteration took ~115 s for nnU-Net and ~55 s for autojoint "
            "on this shared 2-core CPU; module docstring)"
        )
    )

    def plan_text(p: dict[str, Any]) -> str:
        return "x".join(str(v) for v in p["patch"]) + f" batch {p['batch']}"

    head = (
        f"{s['num_cases']} synthetic chest CTs (demo generator, {FOV_MM:g} mm field of view, "
        f"seed 0; classes {', '.join(result['classes'])}); 5-fold CV, one split for both "
        f"tools; folds {result['folds']}; mean ± sample sd over folds. Plans: {plan_note}: "
        f"nnU-Net {CONFIGURATION} {plan_text(plans['nnunet'])}, autojoint "
        f"{plan_text(plans['autojoint'])} ({_lesion_input_note(plans['autojoint'])}). "
        f"Training: {s['epochs']} x {s['iterations']} iterations (+ {s['val_iterations']} "
        "validation batches per epoch), side by side when both trained in one run, "
        f"{s['threads']} thread(s) each, {_recipe_note(s)}; prediction of the validation "
        "cases with each tool's predictor (mirroring, final checkpoint). Scores by "
        "autojoint's evaluator. Two-step: lesion/lung volume, components, consolidation "
        f"fraction, peripheral ratio ({s['peripheral_mm']:g} mm) of nnU-Net's masks -> "
        "balanced logistic regression fitted on the training cases' reference masks; "
        f"the row {AJ_TWO_STEP!r} applies that classifier to autojoint's masks instead "
        "of its own classification head (diagnosis columns only). The two 'gated' rows "
        "empty the mask of each validation case called a class whose every training case "
        "of the fold is lesion-free (autojoint_find_best_configuration's diagnosis gate, "
        "here applied to every fold): autojoint by its own head, nnU-Net by its two-step "
        "diagnosis (segmentation columns only). "
        "s/iteration: epoch wall time incl. validation batches / training iterations.\n\n"
    )
    table = markdown_table(
        COLUMNS,
        {
            name: [mean_sd([r.get(c) for r in rs]) for c in COLUMNS]
            for name, rs in result["rows"].items()
        },
    )
    lines = [
        "",
        f"Paired bootstrap over {len(result['folds'])} fold(s) (10,000 resamples, seed 0):",
        "",
    ]
    for name, (diff, low, high) in result["bootstrap"].items():
        lines.append(f"- {name}: {diff:+.3f} (95% interval {low:+.3f} to {high:+.3f})")
    lines += [
        "",
        "Confusion summed over folds (rows reference, columns predicted, "
        f"order {', '.join(result['classes'])}):",
        "",
    ]
    for name, matrix in result["confusion"].items():
        lines.append(f"- {name}: {matrix}")
    return head + table + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--nnunet-python", type=Path, default=None)
    parser.add_argument("--num-cases", type=int, default=60)
    parser.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=25)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--records",
        type=Path,
        default=None,
        help="keep the per-(tool, fold) rows in RECORDS instead of OUT/rows (e.g. "
        "benchmarks/results/joint3d: small files to commit, so that finished folds outlive "
        "OUT and a later session runs only the missing folds)",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="train nothing: rebuild the table from the cached rows (--records or OUT/rows) "
        "of those --folds that have both tools' rows; the others are named and left out",
    )
    parser.add_argument(
        "--gpu-memory-gb",
        type=float,
        default=1.0,
        help="both planners' GPU memory (default 1; nnU-Net's own default 8 is far too slow "
        "on a CPU, see the module docstring)",
    )
    parser.add_argument(
        "--autojoint-optimizer",
        choices=OPTIMIZERS,
        default=None,
        help="deviate from autojoint's default optimizer (recorded in the table header)",
    )
    parser.add_argument(
        "--autojoint-augmentation",
        choices=AUGMENTATION_PRESETS,
        default=None,
        help="deviate from autojoint's default augmentation (recorded in the table header)",
    )
    parser.add_argument(
        "--peripheral-mm",
        type=float,
        default=PERIPHERAL_MM,
        help=f"two-step feature: subpleural band width (default {PERIPHERAL_MM:g} mm)",
    )
    args = parser.parse_args(argv)
    if args.num_cases < 5:
        parser.error("--num-cases must be >= 5 (five folds)")
    if any(not 0 <= f <= 4 for f in args.folds):
        parser.error("--folds are 0..4")
    run(args)


if __name__ == "__main__":
    main()
