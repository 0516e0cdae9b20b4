"""What ``autojoint_predict`` is asked to do (:class:`PredictOptions`), what it did
(:class:`PredictionReport`), and which trained folds answer (:func:`model_folds`).

Kept apart from the predictor so that the CLI, the Python API, the ONNX export and the
spec-driven prediction share one options record without importing the prediction loop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from autojoint.inference.ensemble import DEFAULT_CHECKPOINT, available_folds
from autojoint.inference.outputs import NIFTI, CaseFailure
from autojoint.io.dicom_series import NO_CHOICE, SeriesChoice
from autojoint.io.variants import resolve_variant
from autojoint.io.workdir import DEFAULT_VARIANT

__all__ = ["PredictOptions", "PredictionReport", "model_folds"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictOptions:
    """How to predict a folder (the CLI flags of ``autojoint_predict``).

    Attributes:
        folds: folds to ensemble (None: every fold with ``checkpoint``).
        checkpoint: which checkpoint of each fold: ``checkpoint_final.pt`` (default, the
            end of training), ``checkpoint_best.pt`` (best EMA validation score) or
            ``checkpoint_latest.pt``.
        tile_batch: tiles per forward pass (None: the plan's training batch size).
        use_tta: mirror tiles over the axes the trainer mirrored.
        evidence: evidence method name (``"cam"``) or None.
        save_probabilities: write ``CASE_probabilities.npz``.
        resume: skip cases whose outputs an earlier run completed (``--continue``).
        report_timing: log the per-case timing breakdown.
        device: ``auto`` (CUDA, then MPS, then CPU: ``runtime.devices.resolve_device``, as
            training), ``cpu``, ``cuda[:N]`` or ``mps``.
        num_parts, part_id: predict only part ``part_id`` of ``num_parts`` of the folder's
            cases (``inference.parts``); other parts may write into the same output folder
            at the same time.
        report: also write the HTML report ``OUTPUT/report/`` (``inference.report``).
        output_formats: how the mask is written: ``nifti`` (``CASE.nii.gz``) and/or
            ``dicom-seg`` (``CASE_seg.dcm``, DICOM inputs only).
        series: which series of a DICOM folder holding several (``--series-uid``).
        variant: the trained variant whose folds predict (None: the default variant;
            ``io.variants.resolve_variant``).
        temperature: calibrates the diagnosis probabilities (``calibrated_probabilities``
            in each record); None: the variant's ``calibration.json`` when there is one.
        postprocessing: ``(label value, min volume mm³)`` rules: smaller components of
            that label are removed (``autojoint_predict --spec``).
        diagnosis_gate: diagnosis classes whose cases get an empty mask
            (``autojoint_predict --spec``, ``evaluation.diagnosis_gate``).
        precision: how the networks run: ``auto`` (float16 autocast on CUDA, bfloat16 on a
            CPU with native bfloat16 instructions, else float32), ``float32`` or
            ``bfloat16`` (``runtime.devices.autocast_dtype``).
    """

    folds: list[str] | None = None
    device: str = "auto"
    step_fraction: float = 0.5
    configuration: str = "fullres"
    tile_batch: int | None = None
    use_tta: bool = True
    evidence: str | None = None
    save_probabilities: bool = False
    resume: bool = False
    report_timing: bool = False
    checkpoint: str = DEFAULT_CHECKPOINT
    num_parts: int = 1
    part_id: int = 0
    report: bool = False
    output_formats: tuple[str, ...] = (NIFTI,)
    series: SeriesChoice = NO_CHOICE
    variant: str | None = None
    temperature: float | None = None
    postprocessing: tuple[tuple[int, float], ...] = ()
    diagnosis_gate: tuple[str, ...] = ()
    precision: str = "auto"


@dataclass
class PredictionReport:
    """This part's cases: predicted now, skipped as already complete, and failed (file +
    reason)."""

    predicted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failures: list[CaseFailure] = field(default_factory=list)
    timings: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures


def model_folds(work_dir: Path, options: PredictOptions) -> tuple[list[str], str]:
    """The folds ``options`` name (``folds``, else every fold of the variant holding the
    checkpoint) and the variant's name: what :func:`load_ensemble` loads.

    Raises:
        FileNotFoundError: no such fold, an untrained variant (or none named while only
            other variants are trained).
        ValueError: a bad variant or checkpoint name.
    """
    folder = resolve_variant(work_dir, options.variant, options.configuration)
    variant = options.variant or DEFAULT_VARIANT
    logger.info("predicting with variant %s (%s)", variant, folder)
    folds = options.folds or available_folds(
        work_dir, options.configuration, options.checkpoint, variant
    )
    if not folds:
        where = folder / "fold_*"
        raise FileNotFoundError(
            f"{where}/{options.checkpoint}: none found; run autojoint_train "
            f"(-c {options.configuration}) first."
        )
    return folds, variant
