"""Optimisers, learning-rate curves and the two training schedules (docs/training.md).

``joint`` (nnU-Net): every parameter, every loss term, from the first epoch; SGD with
Nesterov momentum 0.99, lr 1e-2, poly decay ``lr * (1 - e / E) ** 0.9``.

``two-stage`` (after DeepSC-COVID; docs/methods.md, "References"): pre-train the segmentation
path, then the classification path, then fine-tune everything jointly at a tenth of the
learning rate; Adam with linear decay inside each stage, as the papers.

The learning rate is a pure function of the epoch, so resuming needs no scheduler state.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from autojoint.networks.joint_net import JointNet
from autojoint.planning.schema import SCHEDULES, LossWeights

OPTIMIZERS = ("sgd", "adam")
DEFAULT_LR = {"sgd": 1e-2, "adam": 1e-3}  # nnU-Net's SGD; the papers' Adam
# Share of the epochs of each pre-training stage in the two-stage scheme; the rest fine-tunes.
SEG_PRETRAIN_FRACTION = 0.4
CLS_PRETRAIN_FRACTION = 0.2
FINE_TUNE_LR_FACTOR = 0.1  # DeepSC-COVID: 1e-3 for pre-training, 1e-4 for fine-tuning
POLY_EXPONENT = 0.9


@dataclass(frozen=True)
class Stage:
    """A run of epochs that trains one set of parameters on one mix of loss terms.

    Attributes:
        name: ``joint`` (everything), ``segmentation`` or ``classification``.
        first_epoch / num_epochs: 0-based epoch range ``[first, first + num)``.
        lr_scale: multiplies the configured learning rate.
        decay: ``poly`` (nnU-Net) or ``linear`` (the papers) within the stage.
    """

    name: str
    first_epoch: int
    num_epochs: int
    lr_scale: float
    decay: str

    def contains(self, epoch: int) -> bool:
        return self.first_epoch <= epoch < self.first_epoch + self.num_epochs


def plan_stages(schedule: str, epochs: int) -> list[Stage]:
    """Stages of ``schedule`` over ``epochs`` epochs.

    Two-stage split: ``round(0.4 E)`` segmentation pre-training, ``round(0.2 E)``
    classification pre-training (each at least 1 epoch when E >= 3), the rest (at least 1)
    joint fine-tuning.

    Raises:
        ValueError: unknown schedule, or fewer than 3 epochs for two-stage.
    """
    if schedule == "joint":
        return [Stage("joint", 0, epochs, 1.0, "poly")]
    if schedule != "two-stage":
        raise ValueError(f"unknown schedule '{schedule}'; choose one of {SCHEDULES}.")
    if epochs < 3:
        raise ValueError(f"--schedule two-stage needs at least 3 epochs, got {epochs}.")
    n_seg = max(1, round(SEG_PRETRAIN_FRACTION * epochs))
    n_diagnoses = max(1, round(CLS_PRETRAIN_FRACTION * epochs))
    n_seg = min(n_seg, epochs - 2)
    n_diagnoses = min(n_diagnoses, epochs - n_seg - 1)
    return [
        Stage("segmentation", 0, n_seg, 1.0, "linear"),
        Stage("classification", n_seg, n_diagnoses, 1.0, "linear"),
        Stage(
            "joint",
            n_seg + n_diagnoses,
            epochs - n_seg - n_diagnoses,
            FINE_TUNE_LR_FACTOR,
            "linear",
        ),
    ]


def stage_of(stages: list[Stage], epoch: int) -> int:
    """Index of the stage that trains 0-based ``epoch``."""
    for i, s in enumerate(stages):
        if s.contains(epoch):
            return i
    return len(stages) - 1


def learning_rate(stage: Stage, epoch: int, base_lr: float) -> float:
    """Learning rate of 0-based ``epoch`` in ``stage`` (constant during the epoch)."""
    progress = (epoch - stage.first_epoch) / max(stage.num_epochs, 1)
    factor = (1.0 - progress) ** POLY_EXPONENT if stage.decay == "poly" else 1.0 - progress
    return base_lr * stage.lr_scale * factor


def stage_parameters(net: JointNet, stage: Stage) -> list[nn.Parameter]:
    """Parameters that ``stage`` trains. The segmentation path is the U-Net (with the
    cross-stitch stem, which it owns); the classification path is the classifier subnet."""
    if stage.name == "joint":
        return list(net.parameters())
    if stage.name == "segmentation":
        return list(net.seg.parameters())
    if stage.name == "classification":
        if net.cls is None:
            raise ValueError("the plan has no diagnosis classes: nothing to pre-train.")
        return list(net.cls.parameters())
    raise ValueError(f"unknown stage '{stage.name}'.")


def stage_loss_weights(weights: LossWeights, stage: Stage) -> LossWeights:
    """Loss terms of ``stage``: segmentation pre-training uses L_seg only; classification
    pre-training L_cls and the task-aware L_ta (it shapes the classifier's evidence maps);
    the joint stage the total loss in full (docs/methods.md, "The total loss")."""
    if stage.name == "segmentation":
        return LossWeights(seg=weights.seg, cls=0.0, task_aware=0.0)
    if stage.name == "classification":
        return LossWeights(seg=0.0, cls=weights.cls, task_aware=weights.task_aware)
    return weights


# The task-aware loss (docs/methods.md) asks the classifier's evidence for the reference
# diagnosis to agree with the lesion maps. Before the classifier is past chance that
# evidence is noise, and with l_ta on from step 0 the term fought the diagnosis loss (issue
# 16). It is held at 0 until an epoch's mean diagnosis loss falls below PAST_CHANCE * ln(C)
# (chance is ln C), then ramps linearly to full weight over TASK_AWARE_RAMP_FRACTION of the
# epochs.
PAST_CHANCE = 0.8
TASK_AWARE_RAMP_FRACTION = 0.1
TASK_AWARE_WARMUPS = ("past-chance", "off")


def task_aware_ramp(
    diagnosis_losses: Sequence[float],
    num_classes: int,
    num_epochs: int,
    warmup: str = "past-chance",
) -> float:
    """Factor in [0, 1] on l_ta for the next epoch, from the mean diagnosis loss of each
    epoch so far (``diagnosis_losses``, oldest first: the training log, so a resumed run
    continues the same ramp).

    Raises:
        ValueError: unknown ``warmup``.
    """
    if warmup not in TASK_AWARE_WARMUPS:
        raise ValueError(
            f"unknown task-aware warm-up '{warmup}'; choose one of {TASK_AWARE_WARMUPS}."
        )
    if warmup == "off":
        return 1.0
    threshold = PAST_CHANCE * math.log(max(num_classes, 2))
    past = [i for i, v in enumerate(diagnosis_losses) if math.isfinite(v) and v < threshold]
    if not past:
        return 0.0
    epochs_since = len(diagnosis_losses) - past[0]  # 1 for the epoch right after
    ramp = max(1, round(TASK_AWARE_RAMP_FRACTION * num_epochs))
    return min(1.0, epochs_since / ramp)


def ramped_loss_weights(weights: LossWeights, task_aware_factor: float) -> LossWeights:
    """``weights`` with l_ta multiplied by ``task_aware_factor``."""
    return replace(weights, task_aware=weights.task_aware * task_aware_factor)


def set_trainable(net: nn.Module, params: Iterable[nn.Parameter]) -> None:
    """``requires_grad`` only on ``params``: frozen ones get no gradient, no update, no
    weight decay, and DDP leaves them out of its all-reduce."""
    keep = {id(p) for p in params}
    for p in net.parameters():
        p.requires_grad_(id(p) in keep)


def make_optimizer(
    name: str, params: list[nn.Parameter], lr: float, weight_decay: float
) -> torch.optim.Optimizer:
    """``sgd``: Nesterov momentum 0.99 (nnU-Net); ``adam``: betas (0.9, 0.999) (the papers).

    Raises:
        ValueError: unknown optimiser name.
    """
    if name == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=0.99, nesterov=True, weight_decay=weight_decay
        )
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer '{name}'; choose one of {OPTIMIZERS}.")
