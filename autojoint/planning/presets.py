"""Named presets: the published systems (docs/methods.md, "References") as plan overrides.

A preset is only a list of ``section.field=value`` items for
:func:`autojoint.planning.overrides.apply_overrides`, so it changes switches, losses, loss
weights and the training schedule (``training.schedule``, which ``autojoint_train`` follows
unless given ``--schedule``) but never the data-fitted numbers (spacing, patch, topology):
an MSD-Net preset on a 2D slice dataset gives MSD-Net's blocks in the planned 2D network,
on a CT volume dataset their 3D analogue. ``--set`` items given after a preset win over it.
"""

from __future__ import annotations

from collections.abc import Sequence

# MultiR-Net's lambda in its joint loss L = lambda * L_cls + (1 - lambda) * L_seg.
MULTIR_LAMBDA = 0.5

PRESETS: dict[str, tuple[str, ...]] = {
    "default": (),
    # DeepSC-COVID: inception stems + cross-stitch, image and lesion map concatenated,
    # softmax fusion, Dice + focal segmentation loss, the total loss with l_seg = l_cls = 1
    # and the task-aware loss on at the paper's best weight 10, and its two-stage
    # training (pre-train each path, then fine-tune jointly; autojoint.training.schedule),
    # end to end: the diagnosis's gradient flows into the segmentation path.
    "deepsc-covid": (
        "network.cross_stitch=true",
        "network.classifier_input=concat",
        "network.detach_lesion_input=false",
        "network.fusion=softmax",
        "loss.segmentation=dice_focal",
        "loss_weights.seg=1",
        "loss_weights.cls=1",
        "loss_weights.task_aware=10",
        "training.schedule=two-stage",
    ),
    # MultiR-Net: reverse attention, sigmoid_sum fusion (sum of sigmoids), classifier
    # fed CT x lesion map, two refinement passes, focal Tversky with alpha 0.7, beta 0.3 and
    # the paper's gamma 0.9, no task-aware loss, and the joint loss
    # lambda * L_cls + (1 - lambda) * L_seg with lambda = 0.5 (the paper leaves lambda
    # open in [0, 1]; 0.5 weighs both tasks alike), trained jointly end to end.
    "multir-net": (
        "network.reverse_attention=true",
        "network.classifier_input=multiply",
        "network.detach_lesion_input=false",
        "network.refinement_passes=2",
        "network.fusion=sigmoid_sum",
        "loss.segmentation=focal_tversky",
        "loss.tversky_alpha=0.7",
        "loss.tversky_beta=0.3",
        "loss.tversky_gamma=0.9",
        f"loss_weights.cls={MULTIR_LAMBDA}",
        f"loss_weights.seg={1.0 - MULTIR_LAMBDA}",
        "loss_weights.task_aware=0",
        "training.schedule=joint",
    ),
    # MSD-Net (section 3): segmentation only (no diagnosis terms), pyramid convolution,
    # channel attention and residual refinement blocks, class-weighted multi-class focal
    # loss with gamma 2 (the weights are planned from voxel frequencies).
    "msd-net": (
        "network.pyramid_conv=true",
        "network.channel_attention=true",
        "network.residual_refinement=true",
        "loss.segmentation=focal",
        "loss.focal_gamma=2",
        "loss_weights.seg=1",
        "loss_weights.cls=0",
        "loss_weights.task_aware=0",
        "training.schedule=joint",
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


def split_preset(overrides: Sequence[str]) -> tuple[str, tuple[str, ...]]:
    """``(preset, rest)``: the preset whose items ``overrides`` start with (the longest such;
    ``default`` when none) and the items after them, i.e. ``--preset`` and ``--set`` again
    from a run's recorded overrides (``autojoint_train`` puts the preset's items first)."""
    items = tuple(overrides)
    best = "default"
    for name, preset in PRESETS.items():
        if preset and items[: len(preset)] == preset and len(preset) > len(PRESETS[best]):
            best = name
    return best, items[len(PRESETS[best]) :]
