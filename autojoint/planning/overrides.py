"""``--set section.field=value`` overrides of a plan's switches, typed by the dataclass.

Overrides produce a new plan that the trainer stores in its checkpoints, so the predictor
always rebuilds exactly the network that was trained.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Sequence

from autojoint.planning.schema import Plan

OVERRIDABLE_SECTIONS = ("network", "loss", "loss_weights", "training")


def _coerce(text: str, current: object, key: str) -> object:
    if isinstance(current, bool):
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"--set {key}: expected true/false, got '{text}'.")
    if isinstance(current, int):
        try:
            return int(text)
        except ValueError as err:
            raise ValueError(f"--set {key}: expected an integer, got '{text}'.") from err
    if isinstance(current, float):
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
        new = dataclasses.replace(
            options, **{name: _coerce(value, getattr(options, name), key.strip())}
        )
        plan = dataclasses.replace(plan, **{section: new})
    problems = plan.validate()
    if problems:
        raise ValueError(f"--set {' '.join(overrides)}: {'; '.join(problems)}.")
    return plan
