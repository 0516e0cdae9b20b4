"""The naming rule of trained variants: preset, then the canonical --set items."""

from __future__ import annotations

import pytest

from autojoint.io.variants import variant_name_problem
from autojoint.planning.overrides import canonical_overrides
from autojoint.planning.presets import PRESETS, preset_overrides, split_preset
from autojoint.planning.variants import variant_name


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_a_preset_alone_is_named_by_the_preset(preset: str) -> None:
    items = preset_overrides(preset)
    assert split_preset(items) == (preset, ())
    assert variant_name(items) == preset


def test_set_items_follow_the_preset_in_canonical_form() -> None:
    items = (*preset_overrides("msd-net"), "loss.focal_gamma=3.0", "network.fusion=softmax")
    assert split_preset(items) == ("msd-net", ("loss.focal_gamma=3.0", "network.fusion=softmax"))
    assert variant_name(items) == "msd-net+loss.focal_gamma=3+network.fusion=softmax"
    assert variant_name(("loss.batch_dice=true",)) == "default+loss.batch_dice=true"


def test_order_and_spelling_do_not_change_the_name() -> None:
    a = variant_name(("loss.batch_dice=True", "loss.focal_gamma=2.0"))
    b = variant_name(("loss.focal_gamma=2", "loss.batch_dice=yes"))
    c = variant_name(("loss.batch_dice=false", "loss.focal_gamma=2", "loss.batch_dice=on"))
    assert a == b == c == "default+loss.batch_dice=true+loss.focal_gamma=2"


def test_different_values_give_different_names() -> None:
    names = {
        variant_name(("loss.focal_gamma=2",)),
        variant_name(("loss.focal_gamma=2.5",)),
        variant_name(("loss.voxel_class_weights=0.5,2,4",)),
        variant_name(("loss.voxel_class_weights=[]",)),
        variant_name(("loss.voxel_class_weights=0.5,2",)),
    }
    assert len(names) == 5
    assert all(variant_name_problem(n) is None for n in names)
    assert canonical_overrides(("loss.voxel_class_weights=[0.5, 2, 4]",)) == (
        "loss.voxel_class_weights=0.5,2,4",
    )


def test_long_names_get_a_hash_suffix() -> None:
    items = tuple(preset_overrides("multir-net"))[1:]  # not the preset: each item is named
    name = variant_name(items)
    assert name.startswith("default+loss.") and len(name) <= 73
    assert variant_name_problem(name) is None
    assert name != variant_name(items[:-1])


def test_bad_items_are_refused() -> None:
    with pytest.raises(ValueError, match="expected SECTION.FIELD=VALUE"):
        variant_name(("loss.nope=1",))
    with pytest.raises(ValueError, match="expected true/false"):
        variant_name(("loss.batch_dice=maybe",))
