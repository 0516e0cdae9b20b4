"""The ``autojoint_plan`` job: fingerprint -> plan -> (optionally) preprocess."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from autojoint.fingerprint.compute import compute_fingerprint
from autojoint.fingerprint.schema import Fingerprint
from autojoint.io.dataset import is_ct
from autojoint.io.files import remove_stale_temp_files
from autojoint.io.verify import require_valid_dataset
from autojoint.io.workdir import FINGERPRINT_FILE, PLANS_FILE, preprocessed_dir
from autojoint.planning.overrides import apply_overrides, check_override_keys
from autojoint.planning.planner import detect_memory_budget, plan_experiment
from autojoint.planning.schema import NetworkOptions, Plan
from autojoint.preprocessing.preprocess import preprocess_dataset

logger = logging.getLogger(__name__)


def plan_and_preprocess(
    raw_dir: Path,
    work_dir: Path,
    *,
    num_workers: int = 1,
    gpu_memory_gb: float | None = None,
    preprocess: bool = True,
    configurations: Sequence[str] | None = None,
    lung_mask: str = "off",
    overrides: Sequence[str] = (),
) -> Plan:
    """Write ``fingerprint.json`` and ``plans.json`` into ``work_dir``, then preprocess
    ``configurations`` (default: the plan's top level, plus ``lowres`` when planned; the
    ``2d`` configuration of a 3D dataset only when named).

    The dataset and work directory are checked first (every file read once), so a bad
    input is refused before any long work and nothing is written. ``lung_mask``
    (``off``/``crop``/``mask``) is stored in the plan, so training and prediction crop (and
    mask) every scan alike; see ``autojoint.preprocessing.lung_mask``. ``overrides``
    (``section.field=value`` items, e.g. a preset's) are stored in the plan, and network
    switches among them enter the memory fit, so the patch and batch suit that network.

    Raises:
        DatasetProblems: the dataset has errors (all listed); EnvironmentProblem: the work
            directory is not writable; ValueError: a named configuration the plan does not
            have, or a lung mask without a CT channel.
    """
    work_dir = Path(work_dir)
    check_override_keys(overrides)  # a typo fails now, not after the fingerprint
    dataset = require_valid_dataset(Path(raw_dir), work_dir, num_workers=num_workers)
    remove_stale_temp_files(work_dir)
    logger.info(
        "dataset %s: %d cases, labels %s, classes %s",
        raw_dir,
        len(dataset.cases),
        dataset.labels,
        list(dataset.classes),
    )
    fingerprint = compute_fingerprint(dataset, num_workers=num_workers)
    work_dir.mkdir(parents=True, exist_ok=True)
    fingerprint.save(work_dir / FINGERPRINT_FILE)
    budget, profile = detect_memory_budget(gpu_memory_gb)
    # The CPU profile trades width for speed: a 2-core machine cannot afford nnU-Net's 32..320.
    widths: dict[str, Any] = {"base_features": 16, "max_features": 128} if profile == "cpu" else {}
    plan = plan_with_overrides(
        fingerprint, overrides, memory_budget_gb=budget, device_profile=profile, **widths
    )
    if lung_mask != "off":
        if not is_ct(plan.channel_names):
            raise ValueError(f"--lung-mask {lung_mask} needs a channel named CT in dataset.json.")
        why = "crop to the lungs (+10 mm)" + (
            ", voxels outside set to air" if lung_mask == "mask" else ""
        )
        plan = replace(plan, lung_mask=lung_mask, reasons={**plan.reasons, "lung_mask": why})
        problems = plan.validate()
        if problems:
            raise ValueError(f"--lung-mask {lung_mask}: {'; '.join(problems)}.")
    plan.save(work_dir / PLANS_FILE)
    logger.info(
        "plan: spacing %s, patch %s, batch %d, classification view %s, stages %d (%s)",
        plan.target_spacing,
        plan.patch_size,
        plan.batch_size,
        plan.classification_shape,
        plan.topology.num_stages,
        profile,
    )
    if configurations is None:
        configurations = [plan.configuration] + (["lowres"] if plan.lowres is not None else [])
    for name in configurations:
        plan.for_configuration(name)  # refuse a configuration the plan lacks before any work
    if preprocess:
        for name in configurations:
            logger.info("preprocessing the %s configuration", name)
            remove_stale_temp_files(preprocessed_dir(work_dir, name))
            preprocess_dataset(
                dataset,
                plan.for_configuration(name),
                preprocessed_dir(work_dir, name),
                num_workers=num_workers,
            )
    return plan


def plan_with_overrides(
    fingerprint: Fingerprint, overrides: Sequence[str], **planner_args: Any
) -> Plan:
    """Plan, apply ``overrides``; if they change the network switches, plan again with those
    switches (they change the memory estimate: e.g. refinement passes multiply the
    activations) and apply the overrides once more for the other sections.

    Raises:
        ValueError: an override that :func:`apply_overrides` refuses.
    """
    plan = apply_overrides(plan_experiment(fingerprint, **planner_args), overrides)
    if plan.network != NetworkOptions():
        plan = apply_overrides(
            plan_experiment(fingerprint, network=plan.network, **planner_args), overrides
        )
    if overrides:
        why = "applied at planning (--preset/--set): " + ", ".join(overrides)
        if plan.network != NetworkOptions():
            why += "; the network switches entered the memory fit of patch and batch"
        plan = replace(plan, reasons={**plan.reasons, "overrides": why})
    return plan
