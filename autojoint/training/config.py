"""The trainer's configuration: how to train (what to train is the plan's business)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from autojoint.data.augmentation import AUGMENTATION_PRESETS
from autojoint.io.variants import variant_name_problem
from autojoint.io.workdir import DEFAULT_VARIANT
from autojoint.planning.schema import Plan
from autojoint.runtime.devices import PRECISION_CHOICES
from autojoint.training.schedule import DEFAULT_LR, OPTIMIZERS, TASK_AWARE_WARMUPS, plan_stages

logger = logging.getLogger(__name__)

# TrainerConfig.schedule value meaning "the plan's training.schedule" (autojoint_train's
# default); resolve_schedule replaces it before training starts.
PLAN_SCHEDULE = "plan"


@dataclass(frozen=True)
class TrainerConfig:
    """How to train (what to train is the plan's business)."""

    epochs: int = 100
    iterations_per_epoch: int = 250
    # "sgd" (nnU-Net) or "adam" (the papers); "auto": adam for two-stage, else sgd
    optimizer: str = "auto"
    learning_rate: float | None = None  # None: 1e-2 for SGD, 1e-3 for Adam
    weight_decay: float = 3e-5
    # "joint", "two-stage" (pre-train each path, then fine-tune jointly) or "plan" (the
    # plan's training.schedule, resolved when training starts; autojoint_train's default)
    schedule: str = "joint"
    grad_clip: float = 12.0  # max global gradient norm
    augmentation: str = "default"  # none | light | default (data/augmentation.py)
    device: str = "auto"  # auto (cuda -> mps -> cpu), cpu, cuda[:N], mps
    # autocast: "auto" = float16 + loss scaling on CUDA, float32 elsewhere; "float32";
    # "bfloat16" (CPU with native bfloat16 or CUDA; runtime.devices.training_autocast_dtype)
    precision: str = "auto"
    num_gpus: int = 1  # > 1 spawns one DDP process per GPU (gloo processes on CPU)
    seed: int = 0
    num_workers: int = 0
    oversample_foreground: float = 0.33
    configuration: str = "fullres"  # or "lowres" when the plan has one
    plan_overrides: tuple[str, ...] = ()  # "section.field=value", see planning/overrides.py
    checkpoint_every: int = 5  # epochs between checkpoint_latest.pt writes (and the last)
    val_iterations: int = 10  # validation-loss batches per epoch (folds 0-4)
    final_validation: bool = True  # sliding window over every validation case at the end
    # the final validation mirrors over the trained axes, as autojoint_predict does by default
    use_validation_tta: bool = True
    # keep each validation case's probabilities (fold_X/validation/CASE_probabilities.npz)
    # for ensembles and postprocessing choices (autojoint_find_best_configuration)
    save_validation_probabilities: bool = False
    resume: bool = False  # continue from checkpoint_latest.pt (exact with num_workers=0)
    # "past-chance": l_ta is 0 until the diagnosis loss is past chance, then ramps in
    # (schedule.task_aware_ramp); "off": full l_ta from the first step
    task_aware_warmup: str = "past-chance"
    # The results folder (docs/training.md, "Variants"): "default" = WORK/fold_X (also with
    # plan_overrides: a work dir given to one recipe); None = named from plan_overrides
    # (autojoint_train's default), resolved when training starts.
    variant: str | None = DEFAULT_VARIANT

    def __post_init__(self) -> None:
        # Invalid values fail here, naming the field, instead of epochs into a run
        # (checkpoint_every=0 divided by zero after the first epoch).
        _check_ranges(self)
        _check_choice("augmentation", self.augmentation, AUGMENTATION_PRESETS)
        _check_choice("task_aware_warmup", self.task_aware_warmup, TASK_AWARE_WARMUPS)
        _check_choice("optimizer", self.optimizer, (*OPTIMIZERS, "auto"))
        _check_choice("precision", self.precision, PRECISION_CHOICES)
        if self.variant is not None and (problem := variant_name_problem(self.variant)):
            raise ValueError(f"TrainerConfig.variant: {problem}.")
        # With schedule "plan" the defaults wait for the schedule: resolve_schedule builds
        # the config anew with the plan's schedule, which resolves and checks them then.
        if self.schedule != PLAN_SCHEDULE:
            self._resolve_defaults()
            plan_stages(self.schedule, self.epochs)  # unknown schedule / too few epochs

    def _resolve_defaults(self) -> None:
        """Resolve the defaults that depend on the schedule, so the stored config is explicit."""
        if self.optimizer == "auto":
            object.__setattr__(self, "optimizer", "adam" if self.schedule == "two-stage" else "sgd")
        if self.learning_rate is None:
            object.__setattr__(self, "learning_rate", DEFAULT_LR[self.optimizer])

    @property
    def lr(self) -> float:
        """The initial learning rate (resolved from the optimiser when not given)."""
        return DEFAULT_LR[self.optimizer] if self.learning_rate is None else self.learning_rate


def _check_ranges(c: TrainerConfig) -> None:
    """Raise ValueError naming the first numeric field out of its range (NaN included)."""
    rules = (
        ("epochs", c.epochs >= 1, ">= 1"),
        ("iterations_per_epoch", c.iterations_per_epoch >= 1, ">= 1"),
        ("num_gpus", c.num_gpus >= 1, ">= 1"),
        ("checkpoint_every", c.checkpoint_every >= 1, ">= 1"),
        ("num_workers", c.num_workers >= 0, ">= 0"),
        ("val_iterations", c.val_iterations >= 0, ">= 0"),
        ("seed", c.seed >= 0, ">= 0"),
        ("learning_rate", c.learning_rate is None or c.learning_rate > 0, "> 0 or None"),
        ("weight_decay", c.weight_decay >= 0, ">= 0"),
        ("grad_clip", c.grad_clip > 0, "> 0"),
        ("oversample_foreground", 0 <= c.oversample_foreground <= 1, "in [0, 1]"),
    )
    for name, is_valid, rule in rules:
        if not is_valid:
            raise ValueError(f"TrainerConfig.{name} must be {rule}, got {getattr(c, name)!r}.")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"unknown TrainerConfig.{name} '{value}'; choose one of {choices}.")


def resolve_schedule(config: TrainerConfig, plan: Plan) -> TrainerConfig:
    """``config`` with schedule ``"plan"`` replaced by ``plan.training.schedule`` (and the
    ``"auto"`` optimiser and learning rate resolved for it); any other schedule wins over
    the plan's, with a warning when they differ.

    Raises:
        ValueError: the plan's schedule is two-stage and ``config.epochs`` < 3.
    """
    planned = plan.training.schedule
    if config.schedule != PLAN_SCHEDULE:
        if config.schedule != planned:
            logger.warning(
                "training with the %s schedule as configured (--schedule); the plan asks "
                "for %s (plans.json training.schedule).",
                config.schedule,
                planned,
            )
        return config
    if planned == "two-stage" and config.epochs < 3:
        raise ValueError(
            f"the plan's training.schedule two-stage needs at least 3 epochs, got "
            f"{config.epochs}: pass --epochs 3 or more, or --schedule joint."
        )
    return replace(config, schedule=planned)
