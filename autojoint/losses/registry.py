"""The one registry of segmentation losses, selected by ``plan.loss.segmentation``.

A loss is registered by decorating a factory that turns the plan's ``LossOptions`` into a
per-sample loss::

    @register_segmentation_loss("dice_ce")
    def _dice_ce(options: LossOptions) -> SegmentationLoss:
        return dice_ce_per_sample

The built-in losses live in ``autojoint.losses.segmentation``, which the package's
``__init__`` imports, so they are registered before any lookup.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from autojoint.planning.schema import LossOptions

SegmentationLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""Per-sample loss: logits ``(B, K, ...)`` and int64 target ``(B, ...)`` -> ``(B,)``."""

SegmentationLossFactory = Callable[[LossOptions], SegmentationLoss]

_SEGMENTATION_LOSSES: dict[str, SegmentationLossFactory] = {}


def register_segmentation_loss(
    name: str,
) -> Callable[[SegmentationLossFactory], SegmentationLossFactory]:
    """Decorator: register ``factory`` under ``name``; a name can be taken only once."""

    def decorate(factory: SegmentationLossFactory) -> SegmentationLossFactory:
        if name in _SEGMENTATION_LOSSES:
            raise ValueError(f"segmentation loss {name!r} is already registered")
        _SEGMENTATION_LOSSES[name] = factory
        return factory

    return decorate


def segmentation_loss_names() -> tuple[str, ...]:
    """The registered names, sorted."""
    return tuple(sorted(_SEGMENTATION_LOSSES))


def get_segmentation_loss(name: str, options: LossOptions) -> SegmentationLoss:
    """Build the per-sample loss registered as ``name`` with the plan's ``options``.

    Raises:
        ValueError: ``name`` is not registered (the message lists the registered names), or
            the factory refuses ``options``.
    """
    try:
        factory = _SEGMENTATION_LOSSES[name]
    except KeyError:
        available = ", ".join(segmentation_loss_names())
        raise ValueError(f"unknown segmentation loss {name!r}; available: {available}") from None
    return factory(options)
