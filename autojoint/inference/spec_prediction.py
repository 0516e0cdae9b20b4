"""Predict as ``best_configuration.json`` says (``autojoint_predict --spec FILE``): its
model, or each model of its ensemble followed by the mean of their probabilities
(``inference.folder_ensemble``), then its diagnosis gate, postprocessing and calibration."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from autojoint.inference.folder_ensemble import ensemble_folders
from autojoint.inference.predict_options import PredictionReport, PredictOptions
from autojoint.inference.predictor import run_prediction
from autojoint.io.best_configuration import read_best_configuration
from autojoint.io.variants import safe_variant_name
from autojoint.io.workdir import PLANS_FILE
from autojoint.planning.schema import Plan

logger = logging.getLogger(__name__)

MEMBERS_DIR = "members"  # OUTPUT/members/VARIANT__CONFIGURATION: each model's prediction


def spec_problem(options: PredictOptions) -> str | None:
    """Why ``options`` cannot predict an ensemble spec, or None."""
    unsupported = [
        name
        for name, used in (
            ("--report", options.report),
            ("--evidence", options.evidence is not None),
            ("--num-parts", options.num_parts > 1),
            ("--output-format dicom-seg", options.output_formats != ("nifti",)),
        )
        if used
    ]
    if unsupported:
        return (
            f"{', '.join(unsupported)}: not available for an ensemble of models; predict "
            "with one model (--variant) for these outputs."
        )
    return None


def _check_gate(spec_path: Path, gate: tuple[str, ...], plan: Plan) -> None:
    """Refuse a gate naming a class the plan lacks (a hand-edited or foreign spec), which
    would otherwise silently never apply."""
    if unknown := [c for c in gate if c not in plan.classes]:
        raise ValueError(
            f"{spec_path}: the diagnosis gate names {', '.join(unknown)}, not among the "
            f"plan's classes ({', '.join(plan.classes) or 'none'}); rerun "
            "autojoint_find_best_configuration -w WORK to rewrite it."
        )


def predict_with_spec(
    input_dir: Path, output_dir: Path, work_dir: Path, spec_path: Path, options: PredictOptions
) -> PredictionReport:
    """Predict ``input_dir`` into ``output_dir`` with the choice in ``spec_path``.

    ``options.folds`` (``-f``) wins over the spec's folds; the spec sets the models,
    checkpoint, diagnosis gate, postprocessing and temperature.

    Raises:
        FileNotFoundError: no spec, or a member's fold or checkpoint is missing.
        ValueError: a malformed spec, a diagnosis gate naming a class the plan lacks, or
            options an ensemble cannot honour.
    """
    spec = read_best_configuration(spec_path)
    rules = tuple((r.value, r.min_volume_mm3) for r in spec.postprocessing)
    gate = spec.diagnosis_gate.classes if spec.diagnosis_gate is not None else ()
    plan = Plan.load(Path(work_dir) / PLANS_FILE)
    if gate:
        _check_gate(spec_path, gate, plan)
    base = replace(
        options,
        folds=options.folds or list(spec.folds),
        checkpoint=spec.checkpoint,
        postprocessing=rules,
        diagnosis_gate=gate,
        temperature=spec.temperature,
    )
    logger.info(
        "following %s: %s, diagnosis gate %s, %d postprocessing rule(s), temperature %s",
        spec_path,
        " + ".join(m.name for m in spec.members),
        ", ".join(gate) or "none",
        len(rules),
        spec.temperature,
    )
    if len(spec.members) == 1:
        m = spec.members[0]
        return run_prediction(
            input_dir,
            output_dir,
            work_dir,
            replace(base, variant=m.variant, configuration=m.configuration),
        )
    if problem := spec_problem(options):
        raise ValueError(f"{spec_path}: {problem}")
    report = PredictionReport()
    member_dirs = []
    for m in spec.members:
        folder = (
            Path(output_dir) / MEMBERS_DIR / safe_variant_name(f"{m.variant}__{m.configuration}")
        )
        member = replace(
            base,
            variant=m.variant,
            configuration=m.configuration,
            save_probabilities=True,
            postprocessing=(),
            diagnosis_gate=(),
        )
        part = run_prediction(input_dir, folder, work_dir, member)
        report.failures += [f for f in part.failures if f not in report.failures]
        member_dirs.append(folder)
    report.predicted = ensemble_folders(
        member_dirs,
        output_dir,
        plan,
        postprocessing=rules,
        diagnosis_gate=gate,
        temperature=spec.temperature,
        save_probabilities=options.save_probabilities,
        strict=False,
    )
    return report
