"""Dataclasses read from JSON by their field types; bounds and choices from field metadata."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from autojoint.io.typed_json import constraint, constraint_problems, field_problems, from_json


@dataclasses.dataclass(frozen=True)
class Inner:
    size: tuple[int, int, int]
    weights: tuple[float, ...] = dataclasses.field(
        default=(), metadata=constraint(exclusive_minimum=0)
    )


@dataclasses.dataclass(frozen=True)
class Outer:
    name: str
    count: int = dataclasses.field(metadata=constraint(minimum=2))
    scale: float = 1.0
    mode: str = dataclasses.field(default="a", metadata=constraint(choices=("a", "b")))
    inner: Inner | None = None
    inners: tuple[Inner, ...] = ()
    shape: tuple[int, int, int] | None = None
    table: dict[str, int] = dataclasses.field(default_factory=dict, metadata=constraint(minimum=0))
    flag: bool = False


def test_round_trip_through_json_gives_back_equal_typed_values() -> None:
    obj = Outer(
        "x",
        3,
        0.5,
        "b",
        Inner((1, 2, 3), (0.5, 2.0)),
        (Inner((4, 5, 6)),),
        (7, 8, 9),
        {"k": 1},
        True,
    )
    back = from_json(Outer, json.loads(json.dumps(dataclasses.asdict(obj))))
    assert back == obj
    assert isinstance(back.inner, Inner) and isinstance(back.inner.size, tuple)
    assert isinstance(back.inners[0].size, tuple)


def test_missing_keys_take_defaults_and_numbers_take_the_field_type() -> None:
    back = from_json(Outer, {"name": "x", "count": 2, "scale": 3, "extra": "ignored"})
    assert back == Outer("x", 2, 3.0)
    assert type(back.scale) is float and back.shape is None


def test_null_floats_become_nan() -> None:
    @dataclasses.dataclass(frozen=True)
    class Stats:
        mean: float
        by_name: dict[str, float]

    back = from_json(Stats, {"mean": None, "by_name": {"a": None, "b": 1}}, null_floats=True)
    assert math.isnan(back.mean) and math.isnan(back.by_name["a"]) and back.by_name["b"] == 1.0


def test_field_problems_name_the_bad_keys() -> None:
    problems = field_problems(Outer, {"name": 1, "inner": {"size": [1, 2]}})
    assert "lacks key 'count'" in problems
    assert "'name' must be a string, got 1" in problems
    assert "'inner.size' must hold 3 values, got 2" in problems


def test_constraints_are_checked_on_nested_values() -> None:
    ok = Outer("x", 2, inner=Inner((1, 1, 1), (1.0,)), table={"a": 0})
    assert constraint_problems(ok) == []
    bad = Outer(
        "x",
        1,
        mode="c",
        inner=Inner((1, 1, 1), (1.0, 0.0)),
        inners=(Inner((1, 1, 1), (float("nan"),)),),
        table={"a": -1},
    )
    assert constraint_problems(bad) == [
        "count must be >= 2, got 1",
        "mode must be one of ('a', 'b'), got 'c'",
        "inner.weights[1] must be > 0, got 0.0",
        "inners[0].weights[0] must be > 0, got nan",
        "table.a must be >= 0, got -1",
    ]


def test_from_json_refuses_a_non_dataclass() -> None:
    with pytest.raises(TypeError, match="not a dataclass"):
        from_json(dict, {})
