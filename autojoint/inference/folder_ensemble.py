"""Ensemble prediction folders: the mean of several ``autojoint_predict
--save-probabilities`` outputs of the same input cases, written as one prediction folder
(masks, records, ``diagnoses.csv``) as ``autojoint_predict`` writes it
(``autojoint_ensemble``; ``autojoint_predict --spec`` with two or more models).

Each folder holds per case ``CASE_probabilities.npz`` (the per-label probabilities on the
input grid) and ``CASE.json`` (diagnosis probabilities per fold): the segmentation is the
argmax of the mean of the folders' label probabilities, the diagnosis the mean of their
diagnosis probabilities; every fold of every folder votes in ``fold_agreement``.
"""

from __future__ import annotations

import dataclasses
import logging
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from autojoint.arrays.labels import label_argmax
from autojoint.inference.adjustments import (
    add_calibrated_probabilities,
    gate_prediction,
    postprocess_prediction,
)
from autojoint.inference.folder_tables import rebuild_folder_tables
from autojoint.inference.outputs import (
    CasePrediction,
    case_record,
    probabilities_path,
    read_record,
    record_path,
    write_case,
)
from autojoint.io.case_loading import load_channels
from autojoint.io.dataset import ct_channel_index
from autojoint.io.image_io import ImageGeometry, ImageReadError
from autojoint.planning.schema import Plan

logger = logging.getLogger(__name__)


def common_cases(pred_dirs: Sequence[Path], *, strict: bool = True) -> list[str]:
    """The cases every folder holds with probabilities and a record, sorted.

    Args:
        strict: refuse folders that hold different cases (else: the cases all hold, with
            a warning for the others, e.g. cases one model failed on).

    Raises:
        FileNotFoundError: a folder is missing or holds no such case; with ``strict``, a
            folder lacks a case another holds (all listed).
    """
    per_dir = []
    for folder in pred_dirs:
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"{folder}: prediction folder not found")
        suffix = "_probabilities.npz"
        names = {
            p.name[: -len(suffix)]
            for p in Path(folder).glob(f"*{suffix}")
            if record_path(folder, p.name[: -len(suffix)]).is_file()
        }
        if not names:
            raise FileNotFoundError(
                f"{folder}: no CASE_probabilities.npz with its CASE.json; predict with "
                "autojoint_predict --save-probabilities"
            )
        per_dir.append(names)
    every = set.union(*per_dir)
    problems = [
        f"{folder} lacks {', '.join(sorted(every - names))}"
        for folder, names in zip(pred_dirs, per_dir, strict=True)
        if every - names
    ]
    if problems and not strict:
        logger.warning("left out of the ensemble: %s", "; ".join(problems))
        return sorted(set.intersection(*per_dir))
    if problems:
        raise FileNotFoundError(
            "the prediction folders hold different cases: "
            + "; ".join(problems)
            + ". Predict the same inputs into each (with --save-probabilities)."
        )
    return sorted(every)


def _read_probabilities(path: Path) -> tuple[np.ndarray, ImageGeometry, list[str]]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            probs = np.asarray(npz["probabilities"], np.float32)
            geo = ImageGeometry(
                shape=tuple(int(s) for s in probs.shape[1:]),  # type: ignore[arg-type]
                spacing=tuple(float(s) for s in npz["spacing"]),  # type: ignore[arg-type]
                origin=tuple(float(s) for s in npz["origin"]),  # type: ignore[arg-type]
                direction=tuple(float(s) for s in npz["direction"]),
            )
            return probs, geo, [str(n) for n in npz["labels"]]
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as err:
        raise ValueError(
            f"{path}: not a probabilities file of autojoint_predict ({err}); predict again "
            "with --save-probabilities."
        ) from err


def _input_image(record: dict, plan: Plan) -> np.ndarray | None:
    """The case's first (CT) channel for the lung estimate, None when unreadable."""
    try:
        data, _ = load_channels([Path(p) for p in record.get("inputs", [])])
    except (ImageReadError, OSError, ValueError):
        return None
    ct = ct_channel_index(plan.channel_names)
    return data[ct if ct is not None else 0]


def ensemble_case(
    pred_dirs: Sequence[Path], case_id: str, plan: Plan
) -> tuple[CasePrediction, list[str], list[str]]:
    """One case's mean prediction, its inputs and the names of the votes (``DIR:FOLD``).

    Raises:
        ValueError: the folders' probabilities are on different grids or labels.
    """
    total: np.ndarray | None = None
    first: tuple[ImageGeometry, list[str], Path] | None = None
    diagnosis, votes, names = [], [], []
    record: dict = {}
    for folder in pred_dirs:
        path = probabilities_path(folder, case_id)
        probs, geo, labels = _read_probabilities(path)
        if first is None:
            first = (geo, labels, path)
        elif (geo.shape, labels) != (first[0].shape, first[1]):
            raise ValueError(
                f"{path}: grid {geo.shape} / labels {labels} differ from {first[2]}'s "
                f"({first[0].shape} / {first[1]}); ensemble predictions of the same inputs "
                "by models with the same labels."
            )
        total = probs if total is None else total + probs
        record = read_record(folder, case_id)
        if plan.has_diagnosis:
            diagnosis.append([record["probabilities"][c] for c in plan.classes])
            for fold, fp in (record.get("fold_probabilities") or {}).items():
                votes.append([fp[c] for c in plan.classes])
                names.append(f"{Path(folder).name}:{fold}")
    assert total is not None and first is not None  # pred_dirs is not empty
    mean = total / len(pred_dirs)
    geo = first[0]
    if plan.is_2d and geo.shape[0] == 1:
        geo = ImageGeometry(geo.shape, geo.spacing, geo.origin, geo.direction, is_2d=True)
    result = CasePrediction(
        mask=label_argmax(mean),
        diagnosis_probs=np.mean(diagnosis, axis=0) if diagnosis else None,
        geometry=geo,
        evidence=None,
        fold_diagnosis_probs=np.array(votes) if votes else None,
        lesion_probs=mean,
        image=_input_image(record, plan),
    )
    return result, list(record.get("inputs", [])), names


def ensemble_folders(
    pred_dirs: Sequence[Path],
    out_dir: Path,
    plan: Plan,
    *,
    postprocessing: Sequence[tuple[int, float]] = (),
    diagnosis_gate: Sequence[str] = (),
    temperature: float | None = None,
    save_probabilities: bool = False,
    strict: bool = True,
) -> list[str]:
    """Write the mean of ``pred_dirs`` into ``out_dir``; returns the cases written.

    Args:
        plan: names the labels and diagnosis classes (any member's plan).
        postprocessing: ``(label value, min volume mm³)`` rules applied to each mask.
        diagnosis_gate: diagnosis classes whose cases get an empty mask (decided on the
            mean diagnosis probabilities).
        temperature: also write calibrated diagnosis probabilities.
        save_probabilities: keep the mean probabilities (``CASE_probabilities.npz``).
        strict: refuse folders holding different cases (else ensemble those all hold).

    Raises:
        ValueError: fewer than two folders, ``out_dir`` among them, or folders that do not
            match (cases, grids, labels).
    """
    if len(pred_dirs) < 2:
        raise ValueError("ensemble at least two prediction folders")
    out_dir = Path(out_dir)
    if any(Path(d).resolve() == out_dir.resolve() for d in pred_dirs):
        raise ValueError(f"{out_dir}: the output folder must not be one of the inputs")
    cases = common_cases(pred_dirs, strict=strict)
    out_dir.mkdir(parents=True, exist_ok=True)
    all_votes: list[str] = []
    for case_id in cases:
        result, inputs, votes = ensemble_case(pred_dirs, case_id, plan)
        result = gate_prediction(result, diagnosis_gate, plan.classes)
        result = postprocess_prediction(result, postprocessing)
        if not save_probabilities:
            result = dataclasses.replace(result, lesion_probs=None)
        record = case_record(case_id, [Path(p) for p in inputs], result, plan, votes)
        record["ensemble_of"] = [str(d) for d in pred_dirs]
        add_calibrated_probabilities(record, temperature, plan.classes)
        write_case(out_dir, case_id, result, plan, record)
        all_votes = votes or all_votes
    rebuild_folder_tables(out_dir, cases, plan, all_votes)
    logger.info("ensembled %d case(s) of %d folders into %s", len(cases), len(pred_dirs), out_dir)
    return cases
