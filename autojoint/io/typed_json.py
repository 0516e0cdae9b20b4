"""Check a JSON object against the dataclass that will be built from it.

``plans.json`` and ``fingerprint.json`` are read back into frozen dataclasses whose field
types are the schema (``plans/*.schema.json`` lists the same fields, see tests/test_schemas).
Checking the JSON types first turns a hand-edited or corrupted file into one message naming
every bad key, instead of a ``TypeError`` deep inside the code that uses the value.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _type_problems(tp: Any, value: Any, where: str, null_floats: bool) -> list[str]:
    """Problems of ``value`` against type ``tp``; ``where`` is the JSON path so far."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return []
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return []
        options = [a for a in args if a is not type(None)]
        results = [_type_problems(a, value, where, null_floats) for a in options]
        return [] if any(not r for r in results) else results[0]
    if dataclasses.is_dataclass(tp):
        return field_problems(tp, value, where, null_floats=null_floats)  # type: ignore[arg-type]
    if tp is bool:
        return (
            []
            if isinstance(value, bool)
            else [f"'{where}' must be true/false, got {_describe(value)}"]
        )
    if tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return [] if ok else [f"'{where}' must be an integer, got {_describe(value)}"]
    if tp is float:
        if value is None and null_floats:
            return []
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return [] if ok else [f"'{where}' must be a number, got {_describe(value)}"]
    if tp is str:
        return (
            []
            if isinstance(value, str)
            else [f"'{where}' must be a string, got {_describe(value)}"]
        )
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):  # tuple: a dict from dataclasses.asdict
            return [f"'{where}' must be a list, got {_describe(value)}"]
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                return [f"'{where}' must hold {len(args)} values, got {len(value)}"]
            item_types = list(args)
        else:
            item_types = [args[0] if args else Any] * len(value)
        out: list[str] = []
        for i, (t, v) in enumerate(zip(item_types, value, strict=True)):
            out += _type_problems(t, v, f"{where}[{i}]", null_floats)
        return out
    if origin is dict:
        if not isinstance(value, dict):
            return [f"'{where}' must be an object, got {_describe(value)}"]
        value_type = args[1] if args else Any
        out = []
        for k, v in value.items():
            out += _type_problems(value_type, v, f"{where}.{k}", null_floats)
        return out
    return []  # a type this checker does not know: left to the dataclass


def field_problems(
    cls: type, data: Any, where: str = "", *, null_floats: bool = False
) -> list[str]:
    """Every mismatch between JSON ``data`` and dataclass ``cls`` (empty when it fits).

    Fields with a default may be absent; unknown keys are ignored (a newer minor version
    may add some). ``null_floats`` accepts ``null`` for float fields (NaN written as null).
    """
    if not isinstance(data, dict):
        return [f"'{where or '<top level>'}' must be an object, got {_describe(data)}"]
    hints = typing.get_type_hints(cls)
    out: list[str] = []
    for f in dataclasses.fields(cls):
        key = f"{where}.{f.name}" if where else f.name
        if f.name not in data:
            has_default = (
                f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            )
            if not has_default:
                out.append(f"lacks key '{key}'")
            continue
        out += _type_problems(hints[f.name], data[f.name], key, null_floats)
    return out
