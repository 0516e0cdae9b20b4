"""The prediction report in a real browser (headless Chromium, driven by its command
line): the pages load without an error, every picture shows, the diagnosis is on the
screen, nothing runs wider than a phone's screen, and a screenshot can be taken."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import SimpleITK as sitk

from autojoint.inference.outputs import read_record
from tests.browser import check_page, find_chromium, screenshot
from tests.inference.tiny_workdir import ODD_CASE

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium on PATH (install the Debian package `chromium`; .ci/run does)",
)
PHONE = (390, 844)  # headless Chromium lays out at least 500 px wide; still the narrow layout


@pytest.fixture
def report(predicted_with_report: dict[str, Path]) -> Path:
    return predicted_with_report["out"]


@pytest.mark.parametrize("case", ["case_000", ODD_CASE])
def test_case_page_loads_cleanly_and_shows_the_diagnosis(report: Path, case: str) -> None:
    assert CHROMIUM is not None
    page = report / "report" / "cases" / f"{case}.html"
    seen = check_page(CHROMIUM, page, width=PHONE[0], height=PHONE[1])
    assert seen.errors == [] and seen.console == [] and seen.broken_images == []
    assert seen.num_images == 6  # three views, each with its evidence map
    diagnosis = read_record(report, case)["diagnosis"]
    assert f"Diagnosis: {diagnosis}" in seen.text
    assert "Research use only" in seen.text and case in seen.text
    assert seen.scroll_width <= seen.inner_width  # no sideways scrolling on a phone


def test_index_loads_cleanly_and_lists_every_case(report: Path) -> None:
    assert CHROMIUM is not None
    for width, height in (PHONE, (1280, 800)):
        seen = check_page(CHROMIUM, report / "report" / "index.html", width=width, height=height)
        assert seen.errors == [] and seen.console == [] and seen.broken_images == []
        assert seen.num_images == 3
        for case in ("case_000", "case_001", ODD_CASE):
            assert case in seen.text and read_record(report, case)["diagnosis"] in seen.text
        assert seen.scroll_width <= seen.inner_width


def test_the_check_sees_a_missing_picture(report: Path, tmp_path: Path) -> None:
    """The browser check itself: a page whose picture is gone is reported."""
    assert CHROMIUM is not None
    copy = tmp_path / "report"
    shutil.copytree(report / "report", copy)
    (copy / "cases" / "case_000" / "axial.png").unlink()
    seen = check_page(CHROMIUM, copy / "cases" / "case_000.html")
    assert seen.broken_images == ["case_000/axial.png"]
    assert any("axial.png" in e for e in seen.errors)


def test_screenshot(report: Path, tmp_path: Path) -> None:
    assert CHROMIUM is not None
    png = screenshot(
        CHROMIUM,
        report / "report" / "cases" / "case_000.html",
        tmp_path / "case_000.png",
        width=1000,
        height=1400,
    )
    assert tuple(sitk.ReadImage(str(png)).GetSize()) == (1000, 1400)
