"""``--set section.field=value`` overrides of a plan's switches, typed by the dataclass.

A value is read as its field's type: ``true``/``false``, a number, a word, or for a tuple
field a comma-separated list (``loss.voxel_class_weights=0.5,2,4`` or ``=[0.5, 2, 4]``; ``[]``
for none).

Overrides produce a new plan that the trainer stores in its checkpoints, so the predictor
always rebuilds exactly the network that was trained.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Sequence
from typing import Any

from autojoint.planning.schema import Plan

OVERRIDABLE_SECTIONS = ("network", "loss", "loss_weights", "training")


def _coerce(text: str, tp: Any, key: str) -> object:
    """``text`` as a value of field type ``tp``: a bool, int, float, str, or a tuple of them
    written ``1,2,3`` or ``[1, 2, 3]`` (``[]`` or nothing for an empty tuple)."""
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        inner = text.strip()
        if inner[:1] + inner[-1:] in ("[]", "()"):
            inner = inner[1:-1]
        items = [item.strip() for item in inner.split(",")] if inner.strip() else []
        if args and args[-1] is not Ellipsis and len(items) != len(args):
            raise ValueError(f"--set {key}: expected {len(args)} values, got '{text}'.")
        item_types = list(args) if args and args[-1] is not Ellipsis else [args[0]] * len(items)
        return tuple(_coerce(item, t, key) for item, t in zip(items, item_types, strict=True))
    if tp is bool:
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"--set {key}: expected true/false, got '{text}'.")
    if tp is int:
        try:
            return int(text)
        except ValueError as err:
            raise ValueError(f"--set {key}: expected an integer, got '{text}'.") from err
    if tp is float:
        try:
            return float(text)
        except ValueError as err:
            raise ValueError(f"--set {key}: expected a number, got '{text}'.") from err
    return text


def available_overrides(plan: Plan) -> list[str]:
    """Every ``section.field`` that ``--set`` accepts."""
    return [
        f"{section}.{f.name}"
        for section in OVERRIDABLE_SECTIONS
        for f in dataclasses.fields(getattr(plan, section))
    ]


def check_override_keys(overrides: Sequence[str]) -> None:
    """Refuse malformed items and unknown keys before a plan exists (e.g. before a long
    fingerprint), with the same message as :func:`apply_overrides`; values are checked when
    they are applied.
    """
    hints = typing.get_type_hints(Plan)
    known = [
        f"{section}.{f.name}"
        for section in OVERRIDABLE_SECTIONS
        for f in dataclasses.fields(hints[section])
    ]
    for item in overrides:
        key, sep, _ = item.partition("=")
        if not sep or key.strip() not in known:
            raise ValueError(
                f"--set '{item}': expected SECTION.FIELD=VALUE with one of: {', '.join(known)}."
            )


def apply_overrides(plan: Plan, overrides: Sequence[str]) -> Plan:
    """Return ``plan`` with each ``section.field=value`` applied, then validated.

    Raises:
        ValueError: malformed item, unknown key (the message lists the known ones), a value
            of the wrong type, or a resulting plan that fails validation.
    """
    for item in overrides:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        known = available_overrides(plan)
        if not sep or not dot or f"{section}.{name}" not in known:
            raise ValueError(
                f"--set '{item}': expected SECTION.FIELD=VALUE with one of: {', '.join(known)}."
            )
        options = getattr(plan, section)
        field_type = typing.get_type_hints(type(options))[name]
        new = dataclasses.replace(options, **{name: _coerce(value, field_type, key.strip())})
        plan = dataclasses.replace(plan, **{section: new})
    problems = plan.validate()
    if problems:
        raise ValueError(f"--set {' '.join(overrides)}: {'; '.join(problems)}.")
    return plan


def _format_value(value: object) -> str:
    """One canonical spelling per value: ``true``/``false``, ``2`` for 2.0, ``0.5,2,4``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value).removesuffix(".0")
    if isinstance(value, tuple):
        return ",".join(_format_value(v) for v in value) if value else "[]"
    return str(value).strip()


def canonical_overrides(overrides: Sequence[str]) -> tuple[str, ...]:
    """``overrides`` as the plan change they make, spelled one way: one item per key (the
    last given wins, as in :func:`apply_overrides`), values in a canonical spelling
    (``True``, ``yes`` -> ``true``; ``2.0`` -> ``2``), sorted by key. Two lists with the
    same result give the same tuple (what names a trained variant).

    Raises:
        ValueError: a malformed item, unknown key or badly typed value.
    """
    check_override_keys(overrides)
    hints = typing.get_type_hints(Plan)
    latest: dict[str, str] = {}
    for item in overrides:
        key, _, value = item.partition("=")
        key = key.strip()
        section, _, name = key.partition(".")
        field_type = typing.get_type_hints(hints[section])[name]
        latest[key] = _format_value(_coerce(value, field_type, key))
    return tuple(f"{key}={latest[key]}" for key in sorted(latest))
