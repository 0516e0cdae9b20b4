"""The JSON Schemas in plans/ must list exactly the fields the dataclasses write."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

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
    schema = json.loads((PLANS / "fingerprint.schema.json").read_text())
    assert set(schema["required"]) == _fields(Fingerprint)
    assert set(schema["properties"]["cases"]["items"]["required"]) == _fields(CaseFingerprint)
    assert set(schema["properties"]["intensity"]["items"]["required"]) == _fields(IntensityStats)
    lesion = schema["properties"]["lesion_stats"]["additionalProperties"]
    assert set(lesion["required"]) == _fields(LesionStats)
    assert set(lesion["properties"]) == _fields(LesionStats)
    assert set(schema["$defs"]["percentiles"]["required"]) == set(PERCENTILES)


def test_plan_schema_matches_dataclass() -> None:
    schema = json.loads((PLANS / "plans.schema.json").read_text())
    assert set(schema["required"]) == _fields(Plan)


def test_reference_plan_loads() -> None:
    plan = Plan.load(PLANS / "reference_demo_plan.json")
    assert plan.device_profile == "cpu"
    assert plan.batch_size >= 2


def test_plan_option_schemas_match_dataclasses() -> None:
    from autojoint.planning.schema import LossOptions, NetworkOptions

    schema = json.loads((PLANS / "plans.schema.json").read_text())
    assert set(schema["properties"]["network"]["required"]) == _fields(NetworkOptions)
    assert set(schema["properties"]["loss"]["required"]) == _fields(LossOptions)
