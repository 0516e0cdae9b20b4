"""``autojoint_predict --report`` on tiny synthetic scans with untrained folds: the report
lists every case with the numbers of its record, each page has its views and evidence,
the report can be rebuilt from the output folder alone (to the byte), and 2D works."""

from __future__ import annotations

import csv
import re
import shutil
from html import unescape
from pathlib import Path
from urllib.parse import unquote

import pytest
import SimpleITK as sitk
import torch

from autojoint.cli import predict as cli_predict
from autojoint.inference.ensemble import load_ensemble
from autojoint.inference.outputs import evidence_path, montage_path, read_record
from autojoint.inference.report import write_report
from autojoint.reporting.html_report import INTENDED_USE, ModelInfo
from tests.inference.tiny_workdir import ODD_CASE, make_tiny_workdir

FAST = ["--no-tta", "--step-size", "1"]
ODD = ODD_CASE


@pytest.fixture
def predicted(predicted_with_report: dict[str, Path]) -> dict[str, Path]:
    """Three cases (one oddly named) and a corrupt file, predicted with --report
    (conftest.py)."""
    return predicted_with_report


def _text(page: Path) -> str:
    html = page.read_text(encoding="utf-8")
    html = re.sub(r"<style>.*?</style>", " ", html, flags=re.S)
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def _links(page: Path, tag: str, attribute: str) -> list[str]:
    html = page.read_text(encoding="utf-8")
    return [unescape(v) for v in re.findall(rf'<{tag}\b[^>]*\b{attribute}="([^"]*)"', html)]


def _png_size(path: Path) -> tuple[int, ...]:
    return tuple(sitk.ReadImage(str(path)).GetSize())


def test_index_lists_every_case_with_its_record(predicted: dict[str, Path]) -> None:
    out = predicted["out"]
    index = out / "report" / "index.html"
    text = _text(index)
    with open(out / "diagnoses.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["case"] for r in rows] == ["case_000", "case_001", ODD]
    for row in rows:
        record = read_record(out, row["case"])
        p = record["probabilities"][row["diagnosis"]]
        agree = round(record["fold_agreement"] * 2)
        lung = f"{100 * record['volumes']['lung_involvement']:.1f} %"
        cells = f"{row['case']} {row['diagnosis']} {p:.2f} {agree} of 2 folds"
        assert cells in text, cells
        assert lung in text
    assert "Not predicted (1)" in text and "broken:" in text
    assert text.count(INTENDED_USE) == 2
    # Every link of the index reaches a file, the odd name included.
    pages = _links(index, "a", "href")
    images = _links(index, "img", "src")
    assert len(set(pages)) == 3 and len(images) == 3
    for link in pages + images:
        assert (index.parent / unquote(link)).is_file(), link
    assert not list((out / "report").rglob(".tmp_*"))


def test_case_pages_show_views_evidence_numbers_and_model(predicted: dict[str, Path]) -> None:
    out, work = predicted["out"], predicted["work"]
    for case in ("case_000", ODD):
        record = read_record(out, case)
        page = out / "report" / "cases" / f"{case}.html"
        text = _text(page)
        assert f"Diagnosis: {record['diagnosis']}" in text
        volumes = record["volumes"]
        for label in ("ground_glass", "consolidation"):
            ml = volumes[f"volume_ml_{label}"]
            assert f"{label} volume {ml:.2f} mL" in text or f"{label} volume {ml:.1f} mL" in text
        assert "(model output, uncalibrated)" in text
        assert "Calibrated probability not available" in text
        assert f"Work directory {work}" in text and "Folds 0, 1" in text
        assert "Configuration fullres" in text and "Checkpoint checkpoint_final.pt" in text
        assert "CT in lung window (W 1500 / L -600 HU)" in text
        assert INTENDED_USE in text
        sources = _links(page, "img", "src")
        names = [Path(unquote(s)).name for s in sources]
        assert names == [
            f"{view}{kind}.png"
            for view in ("axial", "coronal", "sagittal")
            for kind in ("", "_evidence")
        ]
        for source in sources:
            png = page.parent / unquote(source)
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        folder = page.parent / case
        # Square pixels of 0.8 mm: coronal 12 x 2.5 mm high (37.5 pixels), 40 wide.
        assert _png_size(folder / "axial.png") == (40, 40)
        assert _png_size(folder / "coronal.png") == (40, 37)
        # --report implies --evidence: the evidence files are outputs like any other.
        assert evidence_path(out, case).is_file() and montage_path(out, case).is_file()


def test_report_rebuilds_from_the_output_folder_alone(predicted: dict[str, Path]) -> None:
    out, work = predicted["out"], predicted["work"]
    report = out / "report"
    before = {p.relative_to(report): p.read_bytes() for p in report.rglob("*") if p.is_file()}
    copy = predicted["root"] / "out_copy"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("report"))
    plan = load_ensemble(work, ["0", "1"], torch.device("cpu")).plan
    model = ModelInfo(
        str(work), "fullres", ("0", "1"), "checkpoint_final.pt", plan.autojoint_version
    )
    index = write_report(copy, plan, model)
    after = {
        p.relative_to(index.parent): p.read_bytes() for p in index.parent.rglob("*") if p.is_file()
    }
    assert after == before
    # A scan moved away after the prediction: its page says so, the others keep pictures.
    moved = predicted["root"] / "moved_0000.nii.gz"
    shutil.move(predicted["inputs"] / "case_001_0000.nii.gz", moved)
    try:
        write_report(copy, plan, model)
    finally:
        shutil.move(moved, predicted["inputs"] / "case_001_0000.nii.gz")
    assert "No pictures:" in _text(copy / "report" / "cases" / "case_001.html")
    assert "No pictures" not in _text(copy / "report" / "cases" / "case_000.html")


def test_2d_slices_get_one_view(tmp_path: Path) -> None:
    raw, work, _ = make_tiny_workdir(tmp_path, num_cases=2, is_2d=True)
    out = tmp_path / "out"
    args = ["-i", str(raw / "imagesTr"), "-o", str(out), "-w", str(work), *FAST, "--report"]
    assert cli_predict.main(args) == 0
    for case in ("slice_000", "slice_001"):
        page = out / "report" / "cases" / f"{case}.html"
        names = [Path(unquote(s)).name for s in _links(page, "img", "src")]
        assert names == ["axial.png", "axial_evidence.png"]
        text = _text(page)
        assert "Coronal" not in text and "Configuration 2d" in text
        assert _png_size(page.parent / case / "axial.png") == (40, 40)


def test_parts_each_draw_their_cases_and_the_last_lists_all(predicted: dict[str, Path]) -> None:
    inputs = predicted["root"] / "inputs_parts"
    inputs.mkdir()
    for image in predicted["inputs"].glob("*_0000.nii.gz"):
        if not image.name.startswith("broken"):
            shutil.copy(image, inputs)
    out = predicted["root"] / "out_parts"
    args = ["-i", str(inputs), "-o", str(out), "-w", str(predicted["work"]), *FAST, "--report"]
    assert cli_predict.main([*args, "--num-parts", "2", "--part-id", "1"]) == 0
    pages = out / "report" / "cases"
    assert sorted(p.name for p in pages.glob("*.html")) == ["case_001.html"]
    assert cli_predict.main([*args, "--num-parts", "2", "--part-id", "0"]) == 0
    index = out / "report" / "index.html"
    assert sorted({unquote(link) for link in _links(index, "a", "href")}) == [
        "cases/case_000.html",
        "cases/case_001.html",
        f"cases/{ODD}.html",
    ]
    single = predicted["out"] / "report" / "cases"
    for case in ("case_000", "case_001", ODD):
        assert (pages / f"{case}.html").read_bytes() == (single / f"{case}.html").read_bytes()
