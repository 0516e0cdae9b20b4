"""Write one predicted case's outputs, on the caller's thread or a background one.

The predictor hands each case to :func:`submit_write` and predicts the next while the write
runs (its lung estimate, NIfTI compression and figures are CPU work a GPU would otherwise
wait for).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from pathlib import Path

from autojoint.inference.adjustments import add_calibrated_probabilities
from autojoint.inference.dicom_seg import SegSource
from autojoint.inference.inputs import InputCase
from autojoint.inference.outputs import CasePrediction, case_record, write_case
from autojoint.inference.timing import StageTimer
from autojoint.io.dicom_series import SeriesPick
from autojoint.planning.schema import Plan


def write_prediction(
    output_dir: Path,
    case: InputCase,
    result: CasePrediction,
    plan: Plan,
    folds: Sequence[str],
    *,
    pick: SeriesPick | None,
    seg_source: SegSource | None,
    temperature: float | None,
    nifti: bool,
) -> dict[str, float]:
    """Write the case (record, tables' row, NIfTI, figures); the seconds it took."""
    timer = StageTimer()
    with timer("write"):
        record = case_record(case.case_id, case.paths, result, plan, folds)
        add_calibrated_probabilities(record, temperature, plan.classes)
        if pick is not None and pick.num_series > 1:
            record["dicom_series"] = pick.to_dict()
        write_case(
            output_dir, case.case_id, result, plan, record, nifti=nifti, seg_source=seg_source
        )
    return timer.seconds


def submit_write(
    writer: Executor, write: Callable[[], dict[str, float]], *, at_once: bool
) -> Future[dict[str, float]]:
    """``write`` (a bound :func:`write_prediction`) on ``writer``, or on this thread when
    ``at_once``: a DICOM-SEG output must be written while the series it refers to is open."""
    if not at_once:
        return writer.submit(write)
    done: Future[dict[str, float]] = Future()
    done.set_result(write())
    return done
