"""The device-size table of docs/planning.md is what the planner makes today."""

from __future__ import annotations

from pathlib import Path

from benchmarks.plan_table import device_size_table

DOCS = Path(__file__).resolve().parents[2] / "docs" / "planning.md"


def test_docs_show_the_plans_by_device_size() -> None:
    docs = DOCS.read_text(encoding="utf-8")
    rows = device_size_table([8, 24, 40, 80, 141])
    assert len(rows) == 2 + 5
    missing = [row for row in rows if row not in docs]
    assert not missing, "docs/planning.md is stale; paste:\n" + "\n".join(rows)
