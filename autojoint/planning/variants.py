"""The name a trained variant gets from its preset and ``--set`` items (docs/training.md,
"Variants").

Rule: the preset's name (``default`` for none), then each ``--set`` item in canonical form
(:func:`autojoint.planning.overrides.canonical_overrides`: one per key, the last wins,
values spelled one way, sorted by key), joined by ``+``: ``msd-net``,
``default+loss.batch_dice=true``, ``msd-net+loss.focal_gamma=3``. So the name reads as the
command that trained it, does not depend on the order of ``--set`` items or on spelling
(``True``, ``2.0``), and a name that is too long or holds characters unsafe in a folder
name becomes a safe prefix plus a short hash (``autojoint.io.variants.safe_variant_name``).
"""

from __future__ import annotations

from collections.abc import Sequence

from autojoint.io.variants import safe_variant_name
from autojoint.planning.overrides import canonical_overrides
from autojoint.planning.presets import split_preset


def variant_name(overrides: Sequence[str]) -> str:
    """The variant name of a run with ``overrides`` (a preset's items first, as
    ``autojoint_train`` passes them, then the ``--set`` items).

    Raises:
        ValueError: a malformed item, unknown key or badly typed value.
    """
    preset, rest = split_preset(overrides)
    return safe_variant_name("+".join((preset, *canonical_overrides(rest))))
