"""Predict masks and diagnoses for a folder of scans with one or more trained folds.

Per case: preprocess exactly as in training; the inference engine (``engine.run_networks``,
which the trainer's full-case validation runs too) segments with the sliding window at full
resolution (batched tiles, mirroring test-time augmentation over the axes the trainer
mirrored, fold ensemble = mean of probabilities); probabilities resampled back to the
cropped input grid, argmax, pasted into the full input grid, written with the input's
geometry. The diagnosis comes from one pass over the whole-scan view per fold (the mean of
the folds' class probabilities). A case that fails is reported and skipped; the others are
still predicted (see docs/prediction.md).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from autojoint.arrays.cropping import uncrop
from autojoint.arrays.labels import label_argmax
from autojoint.inference.adjustments import gate_prediction, postprocess_prediction
from autojoint.inference.case_writing import submit_write, write_prediction
from autojoint.inference.dicom_seg import (
    DICOM_SEG,
    load_seg_source,
    require_highdicom,
)
from autojoint.inference.engine import run_networks
from autojoint.inference.ensemble import (
    Ensemble,
    load_ensemble,
)
from autojoint.inference.evidence import (
    DEFAULT_EVIDENCE,
    evidence_on_input_grid,
    get_evidence_method,
    to_cropped_input_order,
)
from autojoint.inference.folder_tables import DIAGNOSES_CSV, rebuild_folder_tables
from autojoint.inference.inputs import (
    InputCase,
    discover_input_cases,
    find_input_cases,
    only_dicom_cases,
    opened_case,
)
from autojoint.inference.outputs import (
    FAILED_DIR,
    NIFTI,
    CaseFailure,
    CasePrediction,
    clear_failure,
    is_complete,
    read_record,
    record_failure,
)
from autojoint.inference.parts import PART_TEMP_FILE_AGE_SECONDS, Part
from autojoint.inference.predict_options import PredictionReport, PredictOptions, model_folds
from autojoint.inference.report import write_report
from autojoint.inference.scan_size import scan_size_problem
from autojoint.inference.timing import StageTimer, mean_timing_line, timing_line
from autojoint.io.calibration import calibration_path, read_calibration
from autojoint.io.case_loading import load_channels
from autojoint.io.dataset import ct_channel_index, is_ct
from autojoint.io.files import remove_stale_temp_files
from autojoint.io.image_io import ImageGeometry, ImageReadError, read_dicom_series
from autojoint.io.variants import resolve_variant
from autojoint.networks.joint_net import JointNet
from autojoint.planning.schema import Plan
from autojoint.preprocessing.preprocess import PreprocessedCase, preprocess_arrays
from autojoint.reporting.html_report import ModelInfo
from autojoint.runtime.devices import autocast_dtype, resolve_device

__all__ = [
    "DIAGNOSES_CSV",
    "CasePrediction",
    "InputCase",
    "PredictOptions",
    "PredictionReport",
    "discover_input_cases",
    "evidence_on_input_grid",
    "find_input_cases",
    "mask_on_input_grid",
    "model_folds",
    "predict_case",
    "predict_image",
    "run_prediction",
]

logger = logging.getLogger(__name__)


def mask_on_input_grid(probs: np.ndarray, pre: PreprocessedCase, plan: Plan) -> np.ndarray:
    """Undo preprocessing for class probabilities: resample to the cropped grid (in the
    network's axis order), transpose back to the array order, argmax, paste into the input.

    Shape:
        probs ``(K, *pre.data.shape[1:])`` -> ``pre.geometry.shape`` uint8.
    """
    mask = label_argmax(to_cropped_input_order(probs, pre, plan))
    return uncrop(mask, pre.bbox, pre.geometry.shape)


def _probabilities_on_input_grid(cropped: np.ndarray, pre: PreprocessedCase) -> np.ndarray:
    """Cropped per-class probabilities pasted into the input grid: outside the body crop
    the background has probability 1."""
    out = uncrop(cropped.astype(np.float32), pre.bbox, pre.geometry.shape)
    crop_region = uncrop(np.ones(cropped.shape[1:], bool), pre.bbox, pre.geometry.shape)
    out[0][~crop_region] = 1.0
    return out


@torch.no_grad()
def predict_case(
    case: InputCase,
    plan: Plan,
    nets: Sequence[JointNet],
    device: torch.device,
    *,
    step_fraction: float = 0.5,
    with_evidence: bool | str = False,
    tile_batch: int = 1,
    mirror_axes: Sequence[Sequence[int]] | None = None,
    keep_probabilities: bool = False,
    precision: str = "auto",
) -> CasePrediction:
    """Read ``case`` and :func:`predict_image` it."""
    timer = StageTimer(device)
    with timer("read"):
        if case.series is not None:  # chosen and checked by inputs.opened_case
            image, geo = read_dicom_series(case.series)
            data = image[None]
        else:
            data, geo = load_channels(case.paths)
    return predict_image(
        data,
        geo,
        plan,
        nets,
        device,
        case_id=case.case_id,
        source=str(case.paths[0]),
        step_fraction=step_fraction,
        with_evidence=with_evidence,
        tile_batch=tile_batch,
        mirror_axes=mirror_axes,
        keep_probabilities=keep_probabilities,
        timer=timer,
        precision=precision,
    )


@torch.no_grad()
def predict_image(
    data: np.ndarray,
    geo: ImageGeometry,
    plan: Plan,
    nets: Sequence[JointNet],
    device: torch.device,
    *,
    case_id: str,
    source: str,
    step_fraction: float = 0.5,
    with_evidence: bool | str = False,
    tile_batch: int = 1,
    mirror_axes: Sequence[Sequence[int]] | None = None,
    keep_probabilities: bool = False,
    timer: StageTimer | None = None,
    precision: str = "auto",
) -> CasePrediction:
    """Mask, diagnosis probabilities (None without classes) and, if asked, evidence maps
    of the predicted diagnosis, all on the input grid: the per-case core that
    ``autojoint_predict`` (:func:`predict_case`) and ``autojoint.api.Predictor`` share.

    Args:
        data: the case's channels, in the plan's channel order (not modified).
        geo: their grid.
        case_id: the case's name (for the log); source: names the input in error
            messages (a file, or "the image").
        with_evidence: False, True (the default method ``cam``) or an evidence method name.
        mirror_axes: per net, the spatial axes to mirror for test-time augmentation;
            None = no mirroring.
        keep_probabilities: also return per-label probabilities on the input grid.
        timer: adds the stages' seconds to a timer already holding the read.
        precision: how the networks run (``runtime.devices.autocast_dtype``).

    Shape:
        data ``(C, Z, Y, X)`` on ``geo`` -> mask ``geo.shape``.

    Raises:
        ImageReadError: a 2D image for a model of volumes, or a scan too small or too
            large for the plan.
    """
    timer = StageTimer(device) if timer is None else timer
    if geo.is_2d and not plan.is_2d:  # a model of volumes cannot predict a 2D image
        raise ImageReadError(
            f"{source}: is a 2D image, but this model was trained on 3D volumes "
            f"(configuration {plan.configuration}); predict 2D slices with a model trained "
            "on a dataset of 2D images."
        )
    if problem := scan_size_problem(geo, plan):
        raise ImageReadError(f"{source}: {problem}")
    with timer("preprocess"):
        pre = preprocess_arrays(case_id, data, geo, None, plan)
    with timer("network"):
        out = run_networks(
            nets,
            pre,
            plan,
            device,
            mirror_axes=mirror_axes,
            step_fraction=step_fraction,
            tile_batch=tile_batch,
            precision=precision,
        )
    assert out.segmentation is not None  # asked for (segment=True)
    with timer("resample"):
        cropped = to_cropped_input_order(out.segmentation, pre, plan, device)
        mask = uncrop(label_argmax(cropped), pre.bbox, geo.shape)
        lesion_probs = _probabilities_on_input_grid(cropped, pre) if keep_probabilities else None
    ct = ct_channel_index(plan.channel_names)
    image = data[ct if ct is not None else 0]
    if out.diagnosis is None:
        return CasePrediction(
            mask, None, geo, None, None, lesion_probs, image, timing=timer.seconds
        )
    diagnosis_probs = out.diagnosis.mean(axis=0)
    evidence = None
    if with_evidence:
        method = DEFAULT_EVIDENCE if with_evidence is True else str(with_evidence)
        view = torch.from_numpy(pre.cls_data[None]).to(device)
        with timer("evidence"):
            evidence = get_evidence_method(method)(
                list(nets), view, int(np.argmax(diagnosis_probs)), pre, plan
            )
    return CasePrediction(
        mask,
        diagnosis_probs,
        geo,
        evidence,
        out.diagnosis,
        lesion_probs,
        image,
        timing=timer.seconds,
    )


def _own_share(
    part: Part, cases: list[InputCase], failures: list[CaseFailure]
) -> tuple[list[InputCase], list[CaseFailure], list[str]]:
    """This part's cases and invalid cases, and every case name of the folder (sorted).

    Invalid cases (files that form no case) are split with the others, so exactly one part
    reports each of them."""
    all_ids = sorted([c.case_id for c in cases] + [f.case_id for f in failures])
    mine = set(part.select(all_ids))
    if not part.is_whole:
        if mine:
            logger.info("%s: %d of the folder's %d cases", part, len(mine), len(all_ids))
        else:
            logger.info(
                "%s: no cases to predict (the folder holds %d, fewer than the %d parts); done",
                part,
                len(all_ids),
                part.num_parts,
            )
    own_cases = [c for c in cases if c.case_id in mine]
    return own_cases, [f for f in failures if f.case_id in mine], all_ids


def run_prediction(
    input_dir: Path, output_dir: Path, work_dir: Path, options: PredictOptions
) -> PredictionReport:
    """Predict every case of ``input_dir`` (or this part's share) into ``output_dir``
    (docs/prediction.md), then rebuild the folder tables from every case's record.

    A case that fails (unreadable file, NaNs, wrong dimensions, missing channel, out of
    memory...) is logged with its file and reason, listed in ``failures.csv`` and skipped.

    Raises:
        FileNotFoundError: no trained fold, an untrained variant (or none named while only
            other variants are trained), or no input folder/images.
        ValueError: folds of different plans, an unknown evidence method, a bad part or
            variant name.
    """
    part = Part(options.part_id, options.num_parts)
    dev = resolve_device(options.device)
    dtype = autocast_dtype(dev, options.precision)
    logger.info(
        "predicting on %s%s in %s",
        dev,
        " (--device auto)" if options.device == "auto" else "",
        "float32" if dtype is None else f"{str(dtype).removeprefix('torch.')} autocast",
    )
    folds, variant = model_folds(work_dir, options)
    if options.evidence is not None:
        get_evidence_method(options.evidence)
    if DICOM_SEG in options.output_formats:
        require_highdicom()
    ens = load_ensemble(
        Path(work_dir), folds, dev, options.configuration, options.checkpoint, variant
    )
    plan = ens.plan
    model_dir = resolve_variant(work_dir, options.variant, options.configuration)
    options = _with_calibration(options, model_dir, plan)
    found, invalid = discover_input_cases(input_dir, len(plan.channel_names))
    if DICOM_SEG in options.output_formats:  # refused before any case is predicted
        found, not_dicom = only_dicom_cases(found, "--output-format dicom-seg")
        invalid = sorted(invalid + not_dicom, key=lambda f: f.case_id)
    cases, invalid, all_ids = _own_share(part, found, invalid)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    # Another part's temp file may be a write in progress: then leave the young ones alone.
    min_age = 0.0 if part.is_whole else PART_TEMP_FILE_AGE_SECONDS
    for folder in (output_dir, output_dir / FAILED_DIR):
        remove_stale_temp_files(folder, min_age_seconds=min_age)
    report = PredictionReport()
    for failure in invalid:
        logger.error("skipping case %s (%s): %s", failure.case_id, failure.path, failure.reason)
        record_failure(output_dir, failure)
        report.failures.append(failure)
    _predict_cases(cases, output_dir, ens, dev, options, report)
    rebuild_folder_tables(output_dir, all_ids, plan, ens.folds, is_shared=not part.is_whole)
    if options.report:
        model = ModelInfo(
            work_dir=str(work_dir),
            configuration=options.configuration,
            folds=ens.folds,
            checkpoint=options.checkpoint,
            plan_version=plan.autojoint_version,
            variant=variant,
        )
        own = [c.case_id for c in cases]
        write_report(
            output_dir, plan, model, case_ids=all_ids, draw=own, is_shared=not part.is_whole
        )
    if options.report_timing and report.timings:
        logger.info("timing mean per case: %s", mean_timing_line(report.timings))
    logger.info(
        "%spredicted %d, skipped %d (complete), failed %d case(s) with folds %s into %s",
        "" if part.is_whole else f"{part}: ",
        len(report.predicted),
        len(report.skipped),
        len(report.failures),
        list(ens.folds),
        output_dir,
    )
    return report


def _with_calibration(options: PredictOptions, model_dir: Path, plan: Plan) -> PredictOptions:
    """``options`` with the temperature of ``model_dir/calibration.json`` when none is given.

    Raises:
        ValueError: the calibration is malformed or of other diagnosis classes.
    """
    if options.temperature is not None or not plan.has_diagnosis:
        return options
    calibration = read_calibration(model_dir)
    if calibration is None:
        return options
    if tuple(calibration.classes) != tuple(plan.classes):
        raise ValueError(
            f"{calibration_path(model_dir)}: fitted for classes {list(calibration.classes)}, "
            f"the model has {list(plan.classes)}; run autojoint_calibrate again."
        )
    logger.info("calibrating diagnoses with temperature %.3f", calibration.temperature)
    return replace(options, temperature=calibration.temperature)


def _predict_cases(
    cases: list[InputCase],
    output_dir: Path,
    ens: Ensemble,
    dev: torch.device,
    options: PredictOptions,
    report: PredictionReport,
) -> None:
    """Predict and write each case (or skip it, complete, with ``--continue``); a failure
    is recorded and the next case goes on.

    A case's outputs are written on a background thread while the next case is read,
    preprocessed and predicted (its lung estimate, NIfTI compression and figures are CPU
    work that a GPU would otherwise wait for); one write at most is pending, so at most two
    cases' results are held (``case_writing.submit_write``).
    """
    plan = ens.plan
    tile_batch = options.tile_batch or plan.batch_size
    mirror = list(ens.mirror_axes) if options.use_tta else None
    with_evidence = options.evidence is not None and plan.has_diagnosis
    # A CT model refuses a DICOM series of another modality (MR, PET...).
    modality = "CT" if is_ct(plan.channel_names) else None
    bar = tqdm(cases, desc="predict", unit="case")
    pending: _PendingWrite | None = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="autojoint-write") as writer:
        try:
            for case in bar:
                complete = is_complete(
                    output_dir,
                    case.case_id,
                    evidence=with_evidence,
                    probabilities=options.save_probabilities,
                    formats=options.output_formats,
                )
                if options.resume and complete:
                    try:
                        read_record(output_dir, case.case_id)
                        clear_failure(output_dir, case.case_id)
                        report.skipped.append(case.case_id)
                        continue
                    except ValueError as err:
                        logger.warning("%s; predicting it again", err)
                start = time.perf_counter()
                try:
                    with opened_case(case, options.series, modality=modality) as (ready, pick):
                        seg_source = None
                        if ready.series is not None and DICOM_SEG in options.output_formats:
                            seg_source = load_seg_source(ready.series)
                        result = predict_case(
                            ready,
                            plan,
                            ens.nets,
                            dev,
                            step_fraction=options.step_fraction,
                            with_evidence=options.evidence or False if with_evidence else False,
                            tile_batch=tile_batch,
                            mirror_axes=mirror,
                            keep_probabilities=options.save_probabilities,
                            precision=options.precision,
                        )
                        result = gate_prediction(result, options.diagnosis_gate, plan.classes)
                        result = postprocess_prediction(result, options.postprocessing)
                        write = functools.partial(
                            write_prediction,
                            output_dir,
                            case,
                            result,
                            plan,
                            ens.folds,
                            pick=pick,
                            seg_source=seg_source,
                            temperature=options.temperature,
                            nifti=NIFTI in options.output_formats,
                        )
                        written = submit_write(writer, write, at_once=seg_source is not None)
                except Exception as err:  # one bad case must not stop the others
                    _record_case_failure(output_dir, case, err, report)
                    continue
                if pending is not None:
                    pending.finish(output_dir, report, bar, options)
                pending = _PendingWrite(case, result.timing, written, start)
        finally:
            if pending is not None:
                pending.finish(output_dir, report, bar, options)
    bar.close()


def _record_case_failure(
    output_dir: Path, case: InputCase, err: Exception, report: PredictionReport
) -> None:
    reason = f"{type(err).__name__}: {err}"
    logger.error("case %s failed (%s): %s", case.case_id, case.paths[0], reason)
    logger.debug("traceback of case %s", case.case_id, exc_info=err)
    failure = CaseFailure(case.case_id, str(case.paths[0]), reason)
    record_failure(output_dir, failure)
    report.failures.append(failure)


@dataclass
class _PendingWrite:
    """A case whose outputs are being written; ``finish`` waits and books the outcome."""

    case: InputCase
    timing: dict[str, float]
    written: Future[dict[str, float]]
    start: float

    def finish(
        self, output_dir: Path, report: PredictionReport, bar: tqdm, options: PredictOptions
    ) -> None:
        try:
            write_seconds = self.written.result()
        except Exception as err:  # a failed write fails its case only
            _record_case_failure(output_dir, self.case, err, report)
            return
        report.predicted.append(self.case.case_id)
        seconds = {**self.timing, **write_seconds}
        report.timings[self.case.case_id] = seconds
        bar.set_postfix(case=self.case.case_id, seconds=f"{time.perf_counter() - self.start:.1f}")
        if options.report_timing:
            logger.info("timing %s", timing_line(self.case.case_id, seconds))
