"""``OUTPUT/report/``: a static HTML report of a prediction folder that a clinician can
read on any screen (``autojoint_predict --report``, docs/prediction.md "Report").

Everything comes from the files a prediction leaves: the case records ``CASE.json``
(diagnosis, probabilities, fold votes, volumes), the masks ``CASE.nii.gz``, the evidence
maps ``CASE_evidence.nii.gz`` and the input scans the records name. So the report can be
rebuilt for any finished output folder, and, like the folder tables, the index is a
function of the records: each part of a split prediction draws its own cases' pages, then
rewrites the index until it matches the records it reads afterwards, so whichever part
ends last leaves an index of every case.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.colors import to_hex

from autojoint.inference.folder_tables import DIAGNOSES_JSON, MAX_ROUNDS, folder_state
from autojoint.inference.montage import display_range
from autojoint.inference.outputs import (
    FAILED_DIR,
    evidence_path,
    mask_path,
    read_record,
)
from autojoint.inference.parts import PART_TEMP_FILE_AGE_SECONDS
from autojoint.inference.report_views import (
    WINDOW_NOTE_CT,
    WINDOW_NOTE_OTHER,
    grey_rgb,
    label_colours,
    overlay_evidence,
    overlay_labels,
    pick_slice,
    thumbnail,
    to_uint8,
    view_geometry,
    view_slice,
    views_of,
)
from autojoint.io.dataset import ct_channel_index, is_ct
from autojoint.io.dicom_series import NO_CHOICE, SeriesChoice
from autojoint.io.files import atomic_write, remove_stale_temp_files
from autojoint.io.image_io import ImageGeometry, ImageReadError, read_image
from autojoint.planning.schema import Plan
from autojoint.reporting.figures import save_rgb_png
from autojoint.reporting.html_report import (
    CASES_DIR,
    INDEX_PAGE,
    CaseSummary,
    FailedCase,
    FoldVote,
    ModelInfo,
    ViewImages,
    case_html,
    case_image_dir,
    case_page_path,
    index_html,
)

logger = logging.getLogger(__name__)

REPORT_DIR = "report"
THUMBNAIL = "thumbnail.png"


def report_dir(output_dir: Path) -> Path:
    return Path(output_dir) / REPORT_DIR


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text))


def _lesion_labels(plan: Plan) -> list[tuple[str, int]]:
    return [(n, v) for n, v in sorted(plan.labels.items(), key=lambda kv: kv[1]) if v > 0]


def case_summary(record: dict[str, Any], plan: Plan) -> CaseSummary:
    """The numbers of a case record, as the report shows them (no pictures yet)."""
    volumes = record.get("volumes", {})
    diagnosis = record.get("diagnosis")
    votes: tuple[FoldVote, ...] = ()
    probability = calibrated = None
    if diagnosis is not None:
        probability = float(record["probabilities"][diagnosis])
        # The hook for calibration: a record that carries calibrated probabilities shows them.
        if isinstance(record.get("calibrated_probabilities"), dict):
            calibrated = float(record["calibrated_probabilities"][diagnosis])
        votes = tuple(
            FoldVote(str(fold), max(probs, key=probs.get), float(probs[diagnosis]))
            for fold, probs in record.get("fold_probabilities", {}).items()
        )
    lung_ml, involvement = volumes.get("lung_volume_ml"), volumes.get("lung_involvement")
    return CaseSummary(
        case=record["case"],
        diagnosis=diagnosis,
        probability=probability,
        calibrated_probability=calibrated,
        fold_votes=votes,
        lesion_volumes_ml=tuple(
            (name, float(volumes.get(f"volume_ml_{name}") or 0.0))
            for name, _ in _lesion_labels(plan)
        ),
        lesion_ml=float(volumes.get("volume_ml_lesion") or 0.0),
        lung_ml=None if lung_ml is None else float(lung_ml),
        lung_involvement=None if involvement is None else float(involvement),
        is_ct=is_ct(plan.channel_names),
        mask_emptied_by_diagnosis=record.get("mask_emptied_by_diagnosis"),
    )


def _read_scan(
    record: dict[str, Any], out_dir: Path, plan: Plan
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, ImageGeometry]:
    """The case's displayed channel, mask and evidence map (None if not written).

    Raises:
        ImageReadError: a file is missing or unreadable, or the scan is not on the mask's
            grid (the input changed since the prediction).
    """
    case = record["case"]
    mask, geometry = read_image(mask_path(out_dir, case), dtype=np.uint8)
    inputs = [Path(p) for p in record.get("inputs", [])]
    if not inputs:
        raise ImageReadError(f"{out_dir}/{case}.json: names no input scan.")
    scan = inputs[min(ct_channel_index(plan.channel_names) or 0, len(inputs) - 1)]
    # The series the prediction read, when the scan is a DICOM folder holding several.
    uid = (record.get("dicom_series") or {}).get("series_uid")
    image, image_geometry = read_image(scan, series=SeriesChoice((uid,)) if uid else NO_CHOICE)
    if not image_geometry.matches(geometry):
        raise ImageReadError(
            f"{scan}: is no longer on the grid of {mask_path(out_dir, case)}; "
            "predict the case again."
        )
    evidence = None
    if evidence_path(out_dir, case).is_file():
        evidence = read_image(evidence_path(out_dir, case))[0]
    return image, mask, evidence, geometry


def draw_case_images(
    folder: Path,
    image: np.ndarray,
    mask: np.ndarray,
    evidence: np.ndarray | None,
    geometry: ImageGeometry,
    plan: Plan,
) -> tuple[ViewImages, ...]:
    """Write each view's overlay (and evidence) picture and the thumbnail into ``folder``.

    Shape:
        image, mask, evidence ``(Z, Y, X)`` on the input grid.
    """
    window = display_range(image, is_ct(plan.channel_names))
    values = [v for _, v in _lesion_labels(plan)]
    views = []
    for name in views_of(geometry):
        layout = view_geometry(geometry, name)
        index = pick_slice(mask, evidence, layout.slice_axis)
        grey = grey_rgb(view_slice(image, geometry, layout, index), window)
        labels = view_slice(mask, geometry, layout, index)
        overlay = to_uint8(overlay_labels(grey, labels, values))
        save_rgb_png(overlay, folder / f"{name}.png")
        if name == "axial":
            save_rgb_png(thumbnail(overlay), folder / THUMBNAIL)
        evidence_file = None
        if evidence is not None:
            heat = overlay_evidence(grey, view_slice(evidence, geometry, layout, index))
            evidence_file = f"{name}_evidence.png"
            save_rgb_png(
                to_uint8(overlay_labels(heat, labels, values, fill=False)), folder / evidence_file
            )
        size = mask.shape[layout.slice_axis]
        title = "Slice" if geometry.is_2d else name.capitalize()
        caption = title if size == 1 else f"{title}, slice {index + 1} of {size}"
        views.append(ViewImages(title, f"{name}.png", evidence_file, caption))
    return tuple(views)


def _legend(plan: Plan) -> list[tuple[str, str]]:
    names = [n for n, _ in _lesion_labels(plan)]
    return [(n, to_hex(c)) for n, c in zip(names, label_colours(len(names)), strict=True)]


def write_case_page(out_dir: Path, case_id: str, plan: Plan, model: ModelInfo) -> CaseSummary:
    """Draw one predicted case's pictures and write its page (the page last).

    A case whose scan cannot be read any more gets its page without pictures, saying why.

    Raises:
        FileNotFoundError: the case has no record (it is not predicted).
    """
    record = read_record(out_dir, case_id)
    summary = case_summary(record, plan)
    root = report_dir(out_dir)
    folder = root / case_image_dir(case_id)
    remove_stale_temp_files(folder)  # only this case's owner writes here
    try:
        views = draw_case_images(folder, *_read_scan(record, out_dir, plan), plan)
    except (ImageReadError, OSError) as err:
        logger.warning("report: no pictures for case %s: %s", case_id, err)
        summary = replace(summary, image_note=f"No pictures: {err}")
    else:
        summary = replace(summary, views=views, thumbnail=THUMBNAIL)
    window = WINDOW_NOTE_CT if is_ct(plan.channel_names) else WINDOW_NOTE_OTHER
    page = case_html(summary, model, legend=_legend(plan), window_note=window)
    _write_text(root / case_page_path(case_id), page)
    return summary


def recorded_case_ids(out_dir: Path) -> list[str]:
    """Every case of a finished output folder: those with a record or a failure record."""
    out_dir = Path(out_dir)
    ids = {p.stem for p in out_dir.glob("*.json") if p.name != DIAGNOSES_JSON}
    ids |= {p.stem for p in (out_dir / FAILED_DIR).glob("*.json")}
    return sorted(ids)


def _index_text(out_dir: Path, case_ids: Sequence[str], plan: Plan, model: ModelInfo) -> str:
    records, failures, _ = folder_state(out_dir, case_ids, plan)
    root = report_dir(out_dir)
    summaries = []
    for record in records:
        summary = case_summary(record, plan)
        if (root / case_image_dir(summary.case) / THUMBNAIL).is_file():
            summary = replace(summary, thumbnail=THUMBNAIL)
        summaries.append(summary)
    return index_html(
        summaries,
        model,
        labels=[n for n, _ in _lesion_labels(plan)],
        has_diagnosis=plan.has_diagnosis,
        failed=[FailedCase(f.case_id, f.reason) for f in failures],
    )


def write_report(
    out_dir: Path,
    plan: Plan,
    model: ModelInfo,
    *,
    case_ids: Sequence[str] | None = None,
    draw: Sequence[str] | None = None,
    is_shared: bool = False,
) -> Path:
    """Write ``out_dir/report/``: a page per case in ``draw`` and the index of every case
    in ``case_ids``; returns the index's path.

    Args:
        out_dir: a prediction's output folder.
        plan: the plan of the model that predicted (labels, classes, channels).
        model: what the pages say about the model.
        case_ids: the folder's cases in table order (None: every case with a record or
            a failure record in ``out_dir``).
        draw: the cases whose pictures and page to (re)draw (None: all of ``case_ids``);
            a case without a record is left out.
        is_shared: other parts may write into ``out_dir`` meanwhile.
    """
    out_dir = Path(out_dir)
    ids = list(case_ids) if case_ids is not None else recorded_case_ids(out_dir)
    root = report_dir(out_dir)
    min_age = PART_TEMP_FILE_AGE_SECONDS if is_shared else 0.0
    for folder in (root, root / CASES_DIR):
        remove_stale_temp_files(folder, min_age_seconds=min_age)
    for case_id in ids if draw is None else draw:
        try:
            write_case_page(out_dir, case_id, plan, model)
        except FileNotFoundError:
            continue  # failed or not predicted: listed as such in the index
        except ValueError as err:  # a damaged record: the tables leave it out too
            logger.warning("report: no page for case %s: %s", case_id, err)
    index = root / INDEX_PAGE
    for _ in range(MAX_ROUNDS):  # until no other part wrote a record meanwhile
        text = _index_text(out_dir, ids, plan, model)
        _write_text(index, text)
        if _index_text(out_dir, ids, plan, model) == text:
            break
    logger.info("report: %s", index)
    return index
