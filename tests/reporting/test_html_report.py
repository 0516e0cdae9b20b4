"""The report's HTML without a browser: every case listed, numbers with their units, the
intended use on every page, outside text escaped, links percent-encoded, nothing external."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from autojoint import __version__
from autojoint.reporting.html_report import (
    INTENDED_USE,
    CaseSummary,
    FailedCase,
    FoldVote,
    ModelInfo,
    ViewImages,
    case_html,
    format_ml,
    index_html,
)

MODEL = ModelInfo(
    "/data/models/covid_joint",
    "fullres",
    ("0", "1", "2"),
    "checkpoint_final.pt",
    "0.0.9",
    variant="msd-net",
)
LABELS = ["ground_glass", "consolidation"]
LEGEND = [("ground_glass", "#00ff00"), ("consolidation", "#00ffff")]
EVIL = '<script>alert("x")</script> & #1?'


def _case(name: str = "p01", **overrides: object) -> CaseSummary:
    values: dict[str, object] = {
        "case": name,
        "diagnosis": "COVID-19",
        "probability": 0.8123,
        "fold_votes": (
            FoldVote("0", "COVID-19", 0.9),
            FoldVote("1", "CAP", 0.4),
            FoldVote("2", "COVID-19", 0.7),
        ),
        "lesion_volumes_ml": (("ground_glass", 123.456), ("consolidation", 4.5)),
        "lesion_ml": 127.956,
        "lung_ml": 4200.0,
        "lung_involvement": 0.030466,
        "views": (
            ViewImages("Axial", "axial.png", "axial_evidence.png", "Axial, slice 40 of 80"),
            ViewImages("Coronal", "coronal.png", "coronal_evidence.png", "Coronal"),
        ),
        "thumbnail": "thumbnail.png",
    }
    values.update(overrides)
    return CaseSummary(**values)  # type: ignore[arg-type]


class _Collector(HTMLParser):
    """Tags, attributes and text of a page; fails on tags that do not close in order."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.attrs: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.attrs.append((tag, dict(attrs)))
        if tag not in {"meta", "img", "br", "link"}:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1:]}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        if self.stack[-1:] not in (["style"], ["title"]):
            self.text.append(data)


def _parse(page: str) -> _Collector:
    parser = _Collector()
    parser.feed(page)
    parser.close()
    assert parser.stack == []
    return parser


def _visible_text(page: str) -> str:
    parser = _parse(page)
    return " ".join(" ".join(parser.text).split())


def test_index_lists_every_case_with_numbers_and_units() -> None:
    cases = [_case("p01"), _case("p02", diagnosis="CAP", probability=0.55, lung_involvement=0.5)]
    page = index_html(cases, MODEL, labels=LABELS, has_diagnosis=True)
    text = _visible_text(page)
    for expected in (
        "p01",
        "p02",
        "COVID-19",
        "CAP",
        "0.81",
        "0.55",
        "2 of 3 folds",  # fold 1 voted CAP
        "123.5 mL",
        "4.50 mL",
        "128.0 mL",
        "3.0 %",
        "50.0 %",
        "Probability (uncalibrated)",
        "not calibrated",
    ):
        assert expected in text, expected
    assert text.count(INTENDED_USE) == 2  # banner and footer
    assert "Calibrated probability" not in text  # no calibration: no empty column
    assert 'name="viewport"' in page
    rows = re.findall(r"<tr><td.*?</tr>", page, re.S)
    assert len(rows) == 2 and 'href="cases/p01.html"' in rows[0] and "p02.html" in rows[1]


def test_case_page_shows_diagnosis_numbers_views_folds_and_model() -> None:
    page = case_html(_case(), MODEL, legend=LEGEND, window_note="CT in lung window")
    text = _visible_text(page)
    for expected in (
        "Diagnosis: COVID-19",
        "0.81 (model output, uncalibrated)",
        "Calibrated probability not available",
        "2 of 3 folds",
        "ground_glass volume 123.5 mL",
        "consolidation volume 4.50 mL",
        "All lesions volume 128.0 mL",
        "Lung volume (estimate) 4200.0 mL",
        "Lung involvement 3.0 %",
        "Axial, slice 40 of 80",
        "Axial, slice 40 of 80, evidence map for COVID-19",
        "covid_joint",
        "/data/models/covid_joint",
        "fullres",
        "Variant msd-net",
        "0, 1, 2",
        "checkpoint_final.pt",
        "Plan written by autojoint 0.0.9",
        f"Predicted with autojoint {__version__}",
        INTENDED_USE,
    ):
        assert expected in text, expected
    sources = [a["src"] for tag, a in _parse(page).attrs if tag == "img"]
    assert sources == [
        "p01/axial.png",
        "p01/axial_evidence.png",
        "p01/coronal.png",
        "p01/coronal_evidence.png",
    ]


def test_calibrated_probabilities_get_a_column_when_present() -> None:
    cases = [_case("a", calibrated_probability=0.66), _case("b")]
    text = _visible_text(index_html(cases, MODEL, labels=LABELS, has_diagnosis=True))
    assert "Calibrated probability" in text and "0.66" in text
    page = case_html(cases[0], MODEL, legend=LEGEND, window_note="w")
    assert "Calibrated probability 0.66" in _visible_text(page)


def test_outside_text_is_escaped_and_links_are_encoded() -> None:
    case = _case(EVIL, diagnosis="<b>CAP</b>", lesion_volumes_ml=(("<i>gg</i>", 1.0),))
    model = ModelInfo('/w/"><script>', "fullres", ("0",), "checkpoint_final.pt", "0.1.0")
    for page in (
        index_html([case], model, labels=["<i>gg</i>"], has_diagnosis=True),
        case_html(case, model, legend=[("<i>gg</i>", "#00ff00")], window_note="w"),
    ):
        parsed = _parse(page)
        assert not [t for t, _ in parsed.attrs if t in {"script", "b", "i"}]
        assert EVIL in " ".join(parsed.text)  # shown as text, not interpreted
        assert "<script>" not in page and "<b>CAP" not in page
        for tag, attrs in parsed.attrs:
            for name in ("src", "href"):
                if tag in {"a", "img"} and name in attrs:
                    link = str(attrs[name])
                    assert not re.match(r"[a-z]+:", link), link  # relative, no scheme
                    assert "#" not in link and "?" not in link and " " not in link, link
    index = index_html([case], model, labels=["<i>gg</i>"], has_diagnosis=True)
    assert "cases/%3Cscript%3Ealert%28%22x%22%29%3C%2Fscript%3E%20%26%20%231%3F.html" in index


def test_pages_load_nothing_external() -> None:
    pages = [
        index_html([_case()], MODEL, labels=LABELS, has_diagnosis=True),
        case_html(_case(), MODEL, legend=LEGEND, window_note="w"),
    ]
    for page in pages:
        parsed = _parse(page)
        assert not [t for t, _ in parsed.attrs if t in {"script", "link", "iframe"}]
        assert not re.search(r"(https?:)?//", page.replace("</", "")), "an external URL"
        csp = [a for t, a in parsed.attrs if t == "meta" and a.get("http-equiv")]
        assert csp and "default-src 'none'" in str(csp[0]["content"])


def test_lung_involvement_says_why_it_is_missing() -> None:
    not_ct = _case(lung_ml=None, lung_involvement=None, is_ct=False)
    no_lung = _case(lung_ml=0.0, lung_involvement=None)
    assert "not available (not a CT scan" in _visible_text(
        index_html([not_ct], MODEL, labels=LABELS, has_diagnosis=True)
    )
    page = case_html(no_lung, MODEL, legend=LEGEND, window_note="w")
    assert "Lung involvement not available (no lung found" in _visible_text(page)


def test_segmentation_only_and_failed_cases() -> None:
    case = _case(diagnosis=None, probability=None, fold_votes=())
    failed = [FailedCase("bad<1>", "ImageReadError: corrupt")]
    text = _visible_text(
        index_html([case], MODEL, labels=LABELS, has_diagnosis=False, failed=failed)
    )
    assert "Diagnosis" not in text and "uncalibrated" not in text
    assert "Not predicted (1)" in text and "bad<1>: ImageReadError: corrupt" in text
    page = _visible_text(case_html(case, MODEL, legend=LEGEND, window_note="w"))
    assert "Diagnosis" not in page and "Fold agreement" not in page and "128.0 mL" in page


def test_one_fold_agrees_in_the_singular() -> None:
    case = _case(fold_votes=(FoldVote("all", "COVID-19", 0.8),))
    page = _visible_text(case_html(case, MODEL, legend=LEGEND, window_note="w"))
    assert "Fold agreement 1 of 1 fold " in page


def test_a_mask_emptied_by_the_diagnosis_gate_says_so() -> None:
    gated = _case(diagnosis="normal", mask_emptied_by_diagnosis="normal")
    text = _visible_text(case_html(gated, MODEL, legend=LEGEND, window_note="w"))
    assert "Lesion mask emptied by the diagnosis gate: the scan was called normal" in text
    plain = _visible_text(case_html(_case(), MODEL, legend=LEGEND, window_note="w"))
    assert "diagnosis gate" not in plain


def test_a_case_without_pictures_says_why() -> None:
    case = _case(views=(), thumbnail=None, image_note="No pictures: p01.nii.gz: file not found")
    page = case_html(case, MODEL, legend=LEGEND, window_note="w")
    assert "No pictures: p01.nii.gz: file not found" in _visible_text(page)
    assert "<img" not in page


@pytest.mark.parametrize(
    ("ml", "text"), [(0.0, "0.00 mL"), (9.994, "9.99 mL"), (1234.56, "1234.6 mL")]
)
def test_volumes_keep_two_decimals_when_small(ml: float, text: str) -> None:
    assert format_ml(ml) == text
