"""The memory check for network switches given at train time (``--set``/``--preset``)."""

from __future__ import annotations

import logging

from autojoint.planning.resolution import estimate_memory_gb
from autojoint.planning.schema import Plan

logger = logging.getLogger(__name__)


def warn_if_switches_exceed_budget(stored: Plan, plan: Plan) -> float | None:
    """Train-time ``--set``/``--preset`` network switches keep the planned patch and batch;
    when they push the memory estimate past the plan's budget, say so and how to re-plan.

    Returns:
        the estimate (GB) with the new switches when it exceeds the budget, else None.
    """
    if plan.network == stored.network:
        return None
    estimate = estimate_memory_gb(
        plan.patch_size,
        plan.topology,
        plan.batch_size,
        classification_shape=plan.classification_shape if plan.has_diagnosis else None,
        network=plan.network,
        in_channels=len(plan.channel_names),
        num_labels=plan.num_labels,
    )
    if estimate <= plan.memory_budget_gb:
        return None
    logger.warning(
        "the network switches of this run raise the planned memory estimate from %.2f to "
        "%.2f GB, above the plan's budget of %.2f GB (patch %s, batch %d were fitted without "
        "them); training may run out of memory. To fit patch and batch to these switches, "
        "plan with them: autojoint_plan -d RAW -w WORK --preset NAME / --set ITEM.",
        stored.estimated_memory_gb,
        estimate,
        plan.memory_budget_gb,
        plan.patch_size,
        plan.batch_size,
    )
    return estimate
