"""The JSON Schemas in plans/ must list exactly the fields the dataclasses write."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from autojoint.fingerprint.schema import (
    PERCENTILES,
    CaseFingerprint,
    Fingerprint,
    IntensityStats,
    LesionStats,
)
from autojoint.planning.schema import Plan

PLANS = Path(__file__).resolve().parents[1] / "plans"


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def test_fingerprint_schema_matches_dataclass() -> None:
    schema = json.loads((PLANS / "fingerprint.schema.json").read_text(encoding="utf-8"))
    assert set(schema["required"]) == _fields(Fingerprint)
    assert set(schema["properties"]["cases"]["items"]["required"]) == _fields(CaseFingerprint)
    assert set(schema["properties"]["intensity"]["items"]["required"]) == _fields(IntensityStats)
    lesion = schema["properties"]["lesion_stats"]["additionalProperties"]
    assert set(lesion["required"]) == _fields(LesionStats)
    assert set(lesion["properties"]) == _fields(LesionStats)
    assert set(schema["$defs"]["percentiles"]["required"]) == set(PERCENTILES)


def test_plan_schema_matches_dataclass() -> None:
    schema = json.loads((PLANS / "plans.schema.json").read_text(encoding="utf-8"))
    assert set(schema["required"]) == _fields(Plan)


def test_reference_plan_loads() -> None:
    plan = Plan.load(PLANS / "reference_demo_plan.json")
    assert plan.device_profile == "cpu"
    assert plan.batch_size >= 2


def test_plan_option_schemas_match_dataclasses() -> None:
    from autojoint.planning.schema import LossOptions, NetworkOptions

    schema = json.loads((PLANS / "plans.schema.json").read_text(encoding="utf-8"))
    assert set(schema["properties"]["network"]["required"]) == _fields(NetworkOptions)
    assert set(schema["properties"]["loss"]["required"]) == _fields(LossOptions)


# --- the plan schema, walked field by field --------------------------------------------------

JSON_TYPES: dict[Any, str] = {bool: "boolean", int: "integer", float: "number", str: "string"}
BOUNDS = ("minimum", "exclusiveMinimum")


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> dict[str, Any]:
    """``schema`` with its ``$ref`` (``#/$defs/NAME``) replaced by the definition."""
    out = dict(schema)
    while "$ref" in out:
        ref = out.pop("$ref")
        out = {**root["$defs"][ref.removeprefix("#/$defs/")], **out}
    return out


def schema_mismatches(
    tp: Any, schema: Mapping[str, Any], root: Mapping[str, Any], where: str = "", meta: Any = None
) -> list[str]:
    """Where JSON Schema ``schema`` and dataclass field type ``tp`` (with the field's
    ``autojoint.io.typed_json.constraint`` metadata ``meta``) disagree: a field missing from
    either side, another type, nullable on one side only, other choices, or another bound
    (a bound stated on one side only counts: the other side would accept what it refuses).
    """
    meta = meta or {}
    schema = _resolve(schema, root)
    name = where or "<top level>"
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    branches = [_resolve(b, root) for b in schema.get("anyOf", [])]
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        rest = [b for b in branches if b != {"type": "null"}]
        if len(options) != 1 or len(rest) != 1 or len(branches) != 2:
            return [f"{name}: nullable in the dataclass; the schema needs anyOf [X, null]"]
        return schema_mismatches(options[0], rest[0], root, where, meta)
    if branches:
        return [f"{name}: nullable in the schema, not in the dataclass"]
    if dataclasses.is_dataclass(tp):
        if schema.get("type") != "object":
            return [f"{name}: a {tp.__name__} in the dataclass, type {schema.get('type')} here"]
        fields = {f.name: f for f in dataclasses.fields(tp)}
        hints = typing.get_type_hints(tp)
        out = []
        for part in ("required", "properties"):
            keys = set(schema.get(part, ()))
            for key in sorted(keys - set(fields)):
                out.append(f"{name}: '{key}' in the schema's {part}, not in {tp.__name__}")
            for key in sorted(set(fields) - keys):
                out.append(f"{name}: {tp.__name__}.{key} missing from the schema's {part}")
        for key, f in fields.items():
            if key in schema.get("properties", {}):
                sub = f"{where}.{key}" if where else key
                out += schema_mismatches(
                    hints[key], schema["properties"][key], root, sub, f.metadata
                )
        return out
    if origin is tuple:
        if schema.get("type") != "array":
            return [f"{name}: a tuple in the dataclass, type {schema.get('type')} in the schema"]
        fixed = bool(args) and args[-1] is not Ellipsis
        length = (len(args),) * 2 if fixed else (None, None)
        if (schema.get("minItems"), schema.get("maxItems")) != length:
            return [f"{name}: length {length[0]} in the dataclass, the schema's differs"]
        return schema_mismatches(args[0], schema.get("items", {}), root, f"{where}[]", meta)
    if origin is dict:
        if schema.get("type") != "object" or "additionalProperties" not in schema:
            return [f"{name}: a dict in the dataclass, the schema needs additionalProperties"]
        return schema_mismatches(args[1], schema["additionalProperties"], root, f"{where}.*", meta)
    if "const" in schema:
        ok = type(schema["const"]) is tp
        return [] if ok else [f"{name}: const {schema['const']!r} is not a {tp.__name__}"]
    choices = tuple(schema["enum"]) if "enum" in schema else None
    if choices != meta.get("enum"):
        return [f"{name}: choices {choices} in the schema, {meta.get('enum')} in the dataclass"]
    if choices is None and schema.get("type") != JSON_TYPES.get(tp):
        return [f"{name}: type {schema.get('type')} in the schema, {tp} in the dataclass"]
    return [
        f"{name}: {bound} {schema.get(bound)} in the schema, {meta.get(bound)} in the dataclass"
        for bound in BOUNDS
        if schema.get(bound) != meta.get(bound)
    ]


def test_plan_schema_states_the_dataclass_fields_types_and_bounds() -> None:
    schema = json.loads((PLANS / "plans.schema.json").read_text(encoding="utf-8"))
    assert schema_mismatches(Plan, schema, schema) == []


@dataclasses.dataclass(frozen=True)
class _Toy:
    size: int = dataclasses.field(metadata={"minimum": 2})
    shape: tuple[int, int, int] | None = None
    mode: str = dataclasses.field(default="a", metadata={"enum": ("a", "b")})


_TOY_SCHEMA = {
    "type": "object",
    "required": ["size", "shape", "mode"],
    "properties": {
        "size": {"type": "integer", "minimum": 2},
        "shape": {"anyOf": [{"$ref": "#/$defs/triple"}, {"type": "null"}]},
        "mode": {"enum": ["a", "b"]},
    },
    "$defs": {
        "triple": {"type": "array", "items": {"type": "integer"}, "minItems": 3, "maxItems": 3}
    },
}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda s: s, None),
        (lambda s: s["properties"]["size"].update(minimum=1), "minimum 1 in the schema, 2"),
        (lambda s: s["properties"]["size"].pop("minimum"), "minimum None in the schema, 2"),
        (lambda s: s["properties"]["size"].update(type="number"), "type number in the schema"),
        (lambda s: s["properties"].pop("mode"), "_Toy.mode missing from the schema's properties"),
        (lambda s: s["required"].append("extra"), "'extra' in the schema's required"),
        (lambda s: s["properties"].update(shape={"$ref": "#/$defs/triple"}), "anyOf [X, null]"),
        (lambda s: s["$defs"]["triple"].update(maxItems=4), "length 3 in the dataclass"),
        (lambda s: s["properties"]["mode"].update(enum=["a"]), "choices ('a',) in the schema"),
    ],
)
def test_schema_walk_finds_each_kind_of_mismatch(change: Any, expected: str | None) -> None:
    schema = json.loads(json.dumps(_TOY_SCHEMA))
    change(schema)
    found = schema_mismatches(_Toy, schema, schema)
    if expected is None:
        assert found == []
    else:
        assert len(found) == 1 and expected in found[0], found
