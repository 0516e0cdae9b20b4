"""The ``autojoint_plan`` job: fingerprint -> plan -> (optionally) preprocess."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from autojoint.fingerprint.compute import compute_fingerprint, is_ct
from autojoint.io.dataset import load_raw_dataset
from autojoint.planning.planner import detect_memory_budget, plan_experiment
from autojoint.planning.schema import Plan
from autojoint.preprocessing.preprocess import preprocess_dataset
from autojoint.workdir import FINGERPRINT_FILE, PLANS_FILE, preprocessed_dir

logger = logging.getLogger(__name__)


def plan_and_preprocess(
    raw_dir: Path,
    work_dir: Path,
    *,
    num_workers: int = 1,
    gpu_memory_gb: float | None = None,
    preprocess: bool = True,
    lung_mask: str = "off",
) -> Plan:
    """Write ``fingerprint.json`` and ``plans.json`` into ``work_dir``, then preprocess.

    ``lung_mask`` (``off``/``crop``/``mask``) is stored in the plan, so training and
    prediction crop (and mask) every scan alike; see ``autojoint.preprocessing.lung_mask``.
    """
    work_dir = Path(work_dir)
    dataset = load_raw_dataset(Path(raw_dir))
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
    widths = {"base_features": 16, "max_features": 128} if profile == "cpu" else {}
    plan = plan_experiment(fingerprint, memory_budget_gb=budget, device_profile=profile, **widths)
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
    if preprocess:
        configurations = ["fullres"] + (["lowres"] if plan.lowres is not None else [])
        for name in configurations:
            logger.info("preprocessing the %s configuration", name)
            preprocess_dataset(
                dataset,
                plan.for_configuration(name),
                preprocessed_dir(work_dir, name),
                num_workers=num_workers,
            )
    return plan
