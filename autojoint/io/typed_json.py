"""Read a JSON object into the dataclass whose field types are its schema.

``plans.json`` and ``fingerprint.json`` are read back into frozen dataclasses whose field
types are the schema (``plans/*.schema.json`` states the same fields, types and bounds, see
tests/test_schemas). :func:`field_problems` checks the JSON types first, which turns a
hand-edited or corrupted file into one message naming every bad key instead of a
``TypeError`` deep inside the code that uses the value; :func:`from_json` then builds the
dataclass from the same field types (lists become tuples, numbers the field's int or float).

Bounds and allowed values are field metadata under the JSON Schema keyword that states them
(:func:`constraint`), checked on the built object by :func:`constraint_problems`: one
statement that the schema test compares with ``plans/*.schema.json``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


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
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return field_problems(tp, value, where, null_floats=null_floats)
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


def _build(tp: Any, value: Any, null_floats: bool) -> Any:
    """``value`` (JSON, already checked against ``tp``) as a value of type ``tp``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        fitting = [a for a in options if not _type_problems(a, value, "", null_floats)]
        return _build((fitting or options)[0], value, null_floats)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return from_json(tp, value, null_floats=null_floats)
    if tp is bool:
        return bool(value)
    if tp is int:
        return int(value)
    if tp is float:
        return math.nan if value is None else float(value)
    if tp is str:
        return str(value)
    if origin in (tuple, list):
        if origin is tuple and args and args[-1] is not Ellipsis:
            items = [_build(t, v, null_floats) for t, v in zip(args, value, strict=True)]
        else:
            items = [_build(args[0] if args else Any, v, null_floats) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        key_type, value_type = args if args else (Any, Any)
        return {
            _build(key_type, k, null_floats): _build(value_type, v, null_floats)
            for k, v in value.items()
        }
    return value


def from_json(cls: type[T], data: Mapping[str, Any], *, null_floats: bool = False) -> T:
    """Build dataclass ``cls`` (nested dataclasses too) from JSON ``data``.

    Lists become tuples where the field type says tuple, numbers the field's int or float,
    dict keys the key type; a key that is absent takes the field's default, an unknown key
    is ignored. ``null_floats``: ``null`` for a float field becomes NaN.

    Check ``data`` with :func:`field_problems` first: this function trusts the types, and a
    value of the wrong type raises ``TypeError``/``ValueError`` here without naming its key.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__name__} is not a dataclass.")
    hints = typing.get_type_hints(cls)
    kwargs = {
        f.name: _build(hints[f.name], data[f.name], null_floats)
        for f in dataclasses.fields(cls)
        if f.init and f.name in data
    }
    return cls(**kwargs)


MINIMUM = "minimum"
EXCLUSIVE_MINIMUM = "exclusiveMinimum"
ENUM = "enum"


def constraint(
    *,
    minimum: float | None = None,
    exclusive_minimum: float | None = None,
    choices: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Field metadata (``dataclasses.field(metadata=...)``) bounding a number or listing the
    allowed strings, keyed by the JSON Schema keyword that says the same in
    ``plans/*.schema.json`` (``minimum``, ``exclusiveMinimum``, ``enum``). A bound of a
    tuple or dict field applies to each of its numbers."""
    out: dict[str, Any] = {}
    if minimum is not None:
        out[MINIMUM] = minimum
    if exclusive_minimum is not None:
        out[EXCLUSIVE_MINIMUM] = exclusive_minimum
    if choices is not None:
        out[ENUM] = tuple(choices)
    return out


def _value_problems(meta: Mapping[str, Any], value: Any, where: str) -> list[str]:
    if isinstance(value, tuple | list):
        return [p for i, v in enumerate(value) for p in _value_problems(meta, v, f"{where}[{i}]")]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _value_problems(meta, v, f"{where}.{k}")]
    out = []
    if ENUM in meta and value not in meta[ENUM]:
        out.append(f"{where} must be one of {meta[ENUM]}, got '{value}'")
    # ``not v >= m`` rather than ``v < m``: NaN breaks every bound.
    if MINIMUM in meta and not value >= meta[MINIMUM]:
        out.append(f"{where} must be >= {meta[MINIMUM]}, got {value}")
    if EXCLUSIVE_MINIMUM in meta and not value > meta[EXCLUSIVE_MINIMUM]:
        out.append(f"{where} must be > {meta[EXCLUSIVE_MINIMUM]}, got {value}")
    return out


def constraint_problems(obj: Any, where: str = "") -> list[str]:
    """Every value of dataclass instance ``obj`` (and of the dataclasses inside it) that
    breaks its field's :func:`constraint`; empty when all hold."""
    if isinstance(obj, tuple | list):
        return [p for i, v in enumerate(obj) for p in constraint_problems(v, f"{where}[{i}]")]
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        return []
    out: list[str] = []
    for f in dataclasses.fields(obj):
        key = f"{where}.{f.name}" if where else f.name
        value = getattr(obj, f.name)
        if f.metadata:
            out += _value_problems(f.metadata, value, key)
        out += constraint_problems(value, key)
    return out
