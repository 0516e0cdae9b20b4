"""Named presets: the published systems (METHODS.md) as sets of plan overrides.

A preset is only a list of ``section.field=value`` items for
:func:`autojoint.planning.overrides.apply_overrides`, so it changes switches and losses but
never the data-fitted numbers (spacing, patch, topology): an MSD-Net preset on a 2D slice
dataset gives MSD-Net's blocks in the planned 2D network, on a CT volume dataset their 3D
analogue. ``--set`` items given after a preset win over it.
"""

from __future__ import annotations

PRESETS: dict[str, tuple[str, ...]] = {
    "default": (),
    # DeepSC-COVID: inception stems + cross-stitch, image and lesion map concatenated,
    # Dice + focal segmentation loss, task-aware loss weight 10 (section 1).
    "deepsc-covid": (
        "network.cross_stitch=true",
        "network.classifier_input=concat",
        "loss.segmentation=dice_focal",
        "loss_weights.task_aware=10",
    ),
    # MultiR-Net: reverse attention, classifier fed CT x lesion map, two refinement passes,
    # focal Tversky (section 2).
    "multir-net": (
        "network.reverse_attention=true",
        "network.classifier_input=multiply",
        "network.refinement_passes=2",
        "loss.segmentation=focal_tversky",
    ),
    # MSD-Net: pyramid convolution, channel attention and residual refinement blocks,
    # class-weighted multi-class focal loss with gamma 2 (section 3).
    "msd-net": (
        "network.pyramid_conv=true",
        "network.channel_attention=true",
        "network.residual_refinement=true",
        "loss.segmentation=focal",
        "loss.focal_gamma=2",
    ),
}


def preset_overrides(name: str) -> tuple[str, ...]:
    """The overrides of preset ``name``.

    Raises:
        ValueError: unknown name (the message lists the presets).
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown preset {name!r}; available: {', '.join(sorted(PRESETS))}"
        ) from None
