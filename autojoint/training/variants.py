"""Which variant a training run belongs to, refusing to train over another plan's folds,
and its record in ``WORK/variants.json`` (docs/training.md, "Variants")."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from autojoint.io.variants import (
    VariantRecord,
    final_folds,
    read_variant_index,
    write_variant_index,
)
from autojoint.io.workdir import DEFAULT_VARIANT, variant_dir
from autojoint.planning.overrides import apply_overrides
from autojoint.planning.presets import split_preset
from autojoint.planning.schema import Plan
from autojoint.planning.variants import variant_name
from autojoint.runtime.checkpoint import CHECKPOINTS, read_checkpoint
from autojoint.training.config import TrainerConfig

logger = logging.getLogger(__name__)


def name_variant(work_dir: Path, config: TrainerConfig) -> TrainerConfig:
    """``config`` with its variant named: kept when given; else ``default`` when the
    overrides leave the plan as planned (nothing to keep apart), or the name the preset and
    ``--set`` items give (``autojoint.planning.variants``).

    Raises:
        FileNotFoundError: no ``plans.json``.
        ValueError: a bad override, or a configuration the plan does not have.
    """
    if config.variant is not None:
        return config
    stored = Plan.load_configuration(work_dir, config.configuration)
    changed = apply_overrides(stored, config.plan_overrides) != stored
    name = variant_name(config.plan_overrides) if changed else DEFAULT_VARIANT
    return replace(config, variant=name)


def check_variant_plan(folder: Path, variant: str, plan: Plan) -> None:
    """Refuse to train ``plan`` into ``folder`` when a fold there holds a checkpoint of
    another plan: the run would overwrite (or mix into one ensemble) a different model.

    One checkpoint per fold is read (final, else best, else latest); an unreadable one is
    left to the trainer and the predictor, which report it.

    Raises:
        ValueError: a fold of ``folder`` was trained with a different plan.
    """
    for fold in sorted(Path(folder).glob("fold_*")):
        path = next((fold / c for c in CHECKPOINTS if (fold / c).is_file()), None)
        if path is None:
            continue
        try:
            trained = read_checkpoint(path).plan
        except (OSError, ValueError) as err:
            logger.warning("cannot compare plans with %s: %s", path, err)
            continue
        if trained != plan:
            raise ValueError(
                f"variant '{variant}': {path} was trained with a different plan (another "
                "--preset/--set, or plans.json changed since); this run would overwrite "
                "it. Train under another name (--variant NAME), or delete or move "
                f"{folder}/fold_* to retrain this variant."
            )


def record_variant(work_dir: Path, config: TrainerConfig) -> Path:
    """Add or refresh the run's variant in ``WORK/variants.json`` (its folds read from the
    folder, so a record written by one fold's run names the others finished meanwhile);
    returns the index's path.

    Raises:
        ValueError: an existing index is malformed (the message says to delete it).
    """
    assert config.variant is not None, "name_variant first"  # internal invariant
    work_dir = Path(work_dir)
    index = read_variant_index(work_dir)
    folder = variant_dir(work_dir, config.variant, config.configuration)
    old = index.find(config.variant, config.configuration)
    preset, rest = split_preset(config.plan_overrides)
    record = VariantRecord(
        name=config.variant,
        configuration=config.configuration,
        preset=preset,
        overrides=rest,
        folder=folder.relative_to(work_dir).as_posix(),
        folds=final_folds(folder),
        created=old.created if old else datetime.now(UTC).isoformat(timespec="seconds"),
    )
    return write_variant_index(work_dir, index.with_record(record))
