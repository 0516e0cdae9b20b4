"""The HTML of the prediction report: one index of all cases and one page per case.

Pure text building from plain values, so every word the reader sees can be tested without
images or a model. The pages are static and self-contained: inline CSS, system fonts, no
script, pictures as PNG files beside the page, and a Content-Security-Policy that lets the
browser load nothing else (no network even if a page were edited). Every text that comes
from outside (case names come from file names, classes and labels from dataset.json) is
HTML-escaped, and every link to a case's files is percent-encoded.

Layout inside the report folder::

    index.html            all cases
    cases/CASE.html       one case
    cases/CASE/*.png      its pictures (thumbnail.png, axial.png, axial_evidence.png, ...)
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from autojoint import __version__

INDEX_PAGE = "index.html"
CASES_DIR = "cases"
INTENDED_USE = (
    "Research use only. Not a medical device: not for diagnosis, treatment or any "
    "clinical decision."
)
UNCALIBRATED_NOTE = (
    "Probabilities are the model's output (softmax, averaged over the folds). They are not "
    "calibrated: read them as scores, not as the chance that the diagnosis is right."
)
# Nothing but the page itself, its inline style and images beside it (or data: URIs).
CONTENT_SECURITY_POLICY = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'"

_CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
margin:0 auto;padding:0 .8rem 2rem;max-width:75rem;line-height:1.45;color:#1b1b1b;
background:#fff}
h1{font-size:1.5rem;margin:1rem 0 .3rem;overflow-wrap:anywhere}
h2{font-size:1.15rem;margin:1.4rem 0 .5rem}
.use{background:#fff3cd;border:1px solid #d9b44a;border-radius:.4rem;padding:.5rem .7rem;
font-weight:600}
.diagnosis{font-size:1.3rem;margin:.4rem 0}
.note{color:#555;font-size:.9rem}
table{border-collapse:collapse;width:100%}
.scroll{overflow-x:auto}
th,td{border-bottom:1px solid #ddd;padding:.35rem .5rem;text-align:left;vertical-align:top}
td.num{text-align:right;white-space:nowrap}
img{max-width:100%;height:auto;display:block;background:#000}
.thumb{width:6rem;image-rendering:pixelated}
.views{display:grid;grid-template-columns:repeat(auto-fit,minmax(16rem,1fr));gap:.8rem}
.views img{width:100%;image-rendering:pixelated}
figure{margin:0}
figcaption{font-size:.85rem;color:#444;margin-top:.2rem}
.swatch{display:inline-block;width:.9rem;height:.9rem;border:1px solid #333;
vertical-align:middle;margin:0 .25rem 0 .6rem}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem .8rem;margin:0}
dt{font-weight:600}
dd{margin:0;overflow-wrap:anywhere}
footer{margin-top:2rem;border-top:1px solid #ddd;padding-top:.6rem;font-size:.85rem}
@media (max-width:50rem){
table.cases thead{display:none}
table.cases tr{display:block;border-bottom:2px solid #bbb;padding:.4rem 0}
table.cases td{display:flex;justify-content:space-between;gap:1rem;border:0;padding:.15rem 0;
text-align:right}
table.cases td::before{content:attr(data-label);font-weight:600;text-align:left}
dl{grid-template-columns:1fr}
dd{margin-bottom:.4rem}
}
"""


@dataclass(frozen=True)
class ModelInfo:
    """Which model made the predictions (shown on every page).

    Attributes:
        work_dir: the work directory holding the plan and the folds.
        configuration: ``fullres``, ``lowres`` or ``2d``.
        folds: the folds ensembled.
        checkpoint: the checkpoint file of each fold.
        plan_version: the autojoint version that wrote the plan.
        autojoint_version: the autojoint version that predicted.
        variant: the trained variant (``default``: the unmodified plan).
    """

    work_dir: str
    configuration: str
    folds: tuple[str, ...]
    checkpoint: str
    plan_version: str
    autojoint_version: str = __version__
    variant: str = "default"

    @property
    def name(self) -> str:
        """The work directory's name: what a team calls the model."""
        return Path(self.work_dir).name or self.work_dir


@dataclass(frozen=True)
class FoldVote:
    """One fold's own diagnosis and its probability of the ensemble's diagnosis."""

    fold: str
    diagnosis: str
    probability: float


@dataclass(frozen=True)
class ViewImages:
    """One view of a case: its overlay picture and, beside it, the evidence picture
    (file names inside the case's picture folder)."""

    title: str
    overlay: str
    evidence: str | None
    caption: str


@dataclass(frozen=True)
class CaseSummary:
    """What the report shows of one predicted case.

    Attributes:
        diagnosis: None for a segmentation-only model.
        probability: the model's (uncalibrated) probability of ``diagnosis``.
        calibrated_probability: a calibrated probability of ``diagnosis`` when a
            calibration exists (none does yet); the report shows a column for it then.
        fold_votes: one per ensembled fold (empty without a diagnosis).
        lesion_volumes_ml: ``(label, mL)`` per lesion label, in label order.
        lung_ml, lung_involvement: None when not available (not a CT, or no lung found);
            ``lung_involvement`` is a fraction in [0, 1].
        is_ct: the scan is CT (else no lung estimate is made).
        views: the pictures of the case page, in order.
        thumbnail: file name of the index's small picture, or None.
        image_note: why there are no pictures (e.g. the input scan is gone), or None.
        mask_emptied_by_diagnosis: the diagnosis whose gate emptied the mask (``--spec``'s
            diagnosis gate), or None.
    """

    case: str
    diagnosis: str | None = None
    probability: float | None = None
    calibrated_probability: float | None = None
    fold_votes: tuple[FoldVote, ...] = ()
    lesion_volumes_ml: tuple[tuple[str, float], ...] = ()
    lesion_ml: float = 0.0
    lung_ml: float | None = None
    lung_involvement: float | None = None
    is_ct: bool = True
    views: tuple[ViewImages, ...] = ()
    thumbnail: str | None = None
    image_note: str | None = None
    mask_emptied_by_diagnosis: str | None = None

    @property
    def num_folds_agreeing(self) -> int:
        return sum(v.diagnosis == self.diagnosis for v in self.fold_votes)


@dataclass(frozen=True)
class FailedCase:
    """A case of the folder that has no prediction, and why."""

    case: str
    reason: str


def case_page_path(case: str) -> str:
    """The case page's path inside the report folder (a file path, not a URL)."""
    return f"{CASES_DIR}/{case}.html"


def case_image_dir(case: str) -> str:
    """The folder of the case's pictures inside the report folder (a file path)."""
    return f"{CASES_DIR}/{case}"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _url(*parts: str) -> str:
    """A relative URL from path parts, each percent-encoded (a case may be named ``a#b``)."""
    return "/".join(quote(p, safe="") for p in parts)


def format_ml(value: float) -> str:
    """A volume with its unit; small volumes keep two decimals."""
    return f"{value:.2f} mL" if abs(value) < 10 else f"{value:.1f} mL"


def format_percent(fraction: float) -> str:
    return f"{100 * fraction:.1f} %"


def lung_involvement_text(case: CaseSummary) -> str:
    """Lung involvement in %, or why it is not available."""
    if case.lung_involvement is not None:
        return format_percent(case.lung_involvement)
    if not case.is_ct:
        return "not available (not a CT scan: no lung estimate)"
    return "not available (no lung found in the scan)"


def fold_agreement_text(case: CaseSummary) -> str:
    if not case.fold_votes:
        return "not available"
    total = len(case.fold_votes)
    return f"{case.num_folds_agreeing} of {total} fold{'s' if total != 1 else ''}"


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_e(CONTENT_SECURITY_POLICY)}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f'<p class="use" role="note">{_e(INTENDED_USE)}</p>\n{body}\n'
        f'<footer><p>{_e(INTENDED_USE)}</p><p class="note">Made by autojoint '
        f"{_e(__version__)}.</p></footer>\n</body>\n</html>\n"
    )


def _uses_calibration(cases: Sequence[CaseSummary]) -> bool:
    return any(c.calibrated_probability is not None for c in cases)


def _index_row(
    case: CaseSummary, labels: Sequence[str], has_diagnosis: bool, calibrated: bool
) -> str:
    page = _url(CASES_DIR, f"{case.case}.html")
    thumb = (
        f'<a href="{page}"><img class="thumb" src="{_url(CASES_DIR, case.case, case.thumbnail)}"'
        f' alt="axial view of {_e(case.case)}"></a>'
        if case.thumbnail
        else ""
    )
    cells = [
        ("", thumb, ""),
        ("Case", f'<a href="{page}">{_e(case.case)}</a>', ""),
    ]
    if has_diagnosis:
        prob = "" if case.probability is None else f"{case.probability:.2f}"
        cells += [
            ("Diagnosis", _e(case.diagnosis or ""), ""),
            ("Probability (uncalibrated)", prob, "num"),
        ]
        if calibrated:
            cal = case.calibrated_probability
            cells.append(("Calibrated probability", "" if cal is None else f"{cal:.2f}", "num"))
        cells.append(("Fold agreement", _e(fold_agreement_text(case)), "num"))
    volumes = dict(case.lesion_volumes_ml)
    cells += [(f"{label} (mL)", _e(format_ml(volumes.get(label, 0.0))), "num") for label in labels]
    cells += [
        ("All lesions (mL)", _e(format_ml(case.lesion_ml)), "num"),
        ("Lung involvement", _e(lung_involvement_text(case)), "num"),
    ]
    tds = "".join(
        f'<td data-label="{_e(label)}" class="{kind}">{content}</td>'
        for label, content, kind in cells
    )
    return f"<tr>{tds}</tr>"


def index_html(
    cases: Sequence[CaseSummary],
    model: ModelInfo,
    *,
    labels: Sequence[str],
    has_diagnosis: bool,
    failed: Sequence[FailedCase] = (),
) -> str:
    """The report's index: every predicted case in one table, then the failed ones.

    Args:
        labels: lesion label names (a volume column each), in label order.
        has_diagnosis: the model diagnoses (else no diagnosis columns).
    """
    calibrated = _uses_calibration(cases)
    head = ["", "Case"]
    if has_diagnosis:
        head += ["Diagnosis", "Probability (uncalibrated)"]
        head += ["Calibrated probability"] if calibrated else []
        head += ["Fold agreement"]
    head += [f"{label} (mL)" for label in labels] + ["All lesions (mL)", "Lung involvement"]
    rows = "\n".join(_index_row(c, labels, has_diagnosis, calibrated) for c in cases)
    body = [
        f"<h1>Prediction report: {len(cases)} case{'s' if len(cases) != 1 else ''}</h1>",
        f'<p class="note">Model {_e(model.name)}, configuration {_e(model.configuration)}, '
        f"folds {_e(', '.join(model.folds))}. Open a case for its images and details.</p>",
    ]
    if has_diagnosis:
        body.append(f'<p class="note">{_e(UNCALIBRATED_NOTE)}</p>')
    body.append(
        '<div class="scroll"><table class="cases">\n<thead><tr>'
        + "".join(f"<th>{_e(h)}</th>" for h in head)
        + f"</tr></thead>\n<tbody>\n{rows}\n</tbody>\n</table></div>"
    )
    if failed:
        items = "".join(f"<li><b>{_e(f.case)}:</b> {_e(f.reason)}</li>" for f in failed)
        body.append(f"<h2>Not predicted ({len(failed)})</h2>\n<ul>{items}</ul>")
    return _page("Prediction report", "\n".join(body))


def _numbers(case: CaseSummary) -> str:
    rows: list[tuple[str, str]] = []
    if case.diagnosis is not None:
        rows.append(("Diagnosis", case.diagnosis))
        if case.probability is not None:
            rows.append(("Probability", f"{case.probability:.2f} (model output, uncalibrated)"))
        cal = case.calibrated_probability
        rows.append(("Calibrated probability", "not available" if cal is None else f"{cal:.2f}"))
        rows.append(("Fold agreement", fold_agreement_text(case)))
    rows += [(f"{label} volume", format_ml(ml)) for label, ml in case.lesion_volumes_ml]
    rows.append(("All lesions volume", format_ml(case.lesion_ml)))
    if case.mask_emptied_by_diagnosis is not None:
        rows.append(
            (
                "Lesion mask",
                f"emptied by the diagnosis gate: the scan was called "
                f"{case.mask_emptied_by_diagnosis}, a class without lesions in training",
            )
        )
    lung = "not available" if case.lung_ml is None else format_ml(case.lung_ml)
    rows += [("Lung volume (estimate)", lung), ("Lung involvement", lung_involvement_text(case))]
    items = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows)
    return f"<dl>{items}</dl>"


def _folds_table(case: CaseSummary) -> str:
    rows = "".join(
        f"<tr><td>{_e(v.fold)}</td><td>{_e(v.diagnosis)}</td>"
        f'<td class="num">{v.probability:.2f}</td></tr>'
        for v in case.fold_votes
    )
    return (
        f'<div class="scroll"><table><thead><tr><th>Fold</th><th>Its diagnosis</th>'
        f"<th>Its probability of {_e(case.diagnosis)}</th></tr></thead><tbody>{rows}</tbody>"
        "</table></div>"
    )


def _figure(folder: str, name: str, alt: str, caption: str) -> str:
    return (
        f'<figure><img src="{_url(folder, name)}" alt="{_e(alt)}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def _views(case: CaseSummary, legend: Sequence[tuple[str, str]], window_note: str) -> str:
    if not case.views:
        return f'<p class="note">{_e(case.image_note or "No images.")}</p>'
    swatches = "".join(
        f'<span class="swatch" style="background:{_e(colour)}"></span>{_e(name)}'
        for name, colour in legend
    )
    parts = [f'<p class="note">{_e(window_note)}. Lesion labels:{swatches}.</p>']
    for view in case.views:
        figures = [_figure(case.case, view.overlay, f"{view.title} view", view.caption)]
        if view.evidence is not None:
            figures.append(
                _figure(
                    case.case,
                    view.evidence,
                    f"{view.title} evidence map",
                    f"{view.caption}, evidence map for {case.diagnosis}",
                )
            )
        parts.append(f'<h3>{_e(view.title)}</h3>\n<div class="views">{"".join(figures)}</div>')
    if case.views and all(v.evidence is None for v in case.views) and case.diagnosis:
        parts.append(
            '<p class="note">No evidence map: the prediction was made without --evidence.</p>'
        )
    return "\n".join(parts)


def _model(model: ModelInfo) -> str:
    rows = [
        ("Model", model.name),
        ("Work directory", model.work_dir),
        ("Configuration", model.configuration),
        ("Variant", model.variant),
        ("Folds", ", ".join(model.folds)),
        ("Checkpoint", model.checkpoint),
        ("Plan written by", f"autojoint {model.plan_version}"),
        ("Predicted with", f"autojoint {model.autojoint_version}"),
    ]
    return "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows) + "</dl>"


def case_html(
    case: CaseSummary,
    model: ModelInfo,
    *,
    legend: Sequence[tuple[str, str]],
    window_note: str,
) -> str:
    """One case's page (it lives in ``cases/``): diagnosis, numbers with units, the views
    with their evidence maps, the folds' votes and the model.

    Args:
        legend: ``(label name, CSS colour)`` of the lesion overlays.
        window_note: how the scan is displayed (e.g. the CT window).
    """
    body = [
        f'<p><a href="../{INDEX_PAGE}">All cases</a></p>',
        f"<h1>{_e(case.case)}</h1>",
    ]
    if case.diagnosis is not None:
        body.append(f'<p class="diagnosis">Diagnosis: <strong>{_e(case.diagnosis)}</strong></p>')
    body += ["<h2>Findings</h2>", _numbers(case)]
    if case.diagnosis is not None:
        body.append(f'<p class="note">{_e(UNCALIBRATED_NOTE)}</p>')
    body += ["<h2>Images</h2>", _views(case, legend, window_note)]
    if case.fold_votes:
        body += ["<h2>Folds</h2>", _folds_table(case)]
    body += ["<h2>Model</h2>", _model(model)]
    return _page(f"{case.case}: prediction report", "\n".join(body))
