"""Fixtures shared by the loss tests."""

from __future__ import annotations

import pytest

from autojoint.planning.schema import Plan
from tests.fingerprints import tiny_plan


@pytest.fixture(scope="module")
def plan() -> Plan:
    """A tiny 3D plan (patch and view 8 x 16 x 16) for the joint-loss tests."""
    return tiny_plan(shape=(8, 16, 16))
