"""DICOM-SEG output: the predicted mask as a DICOM Segmentation object that references the
series it was predicted from, so that a PACS or a DICOM viewer shows it over the scan.

Written with highdicom (the optional ``dicom`` extra: ``pip install 'autojoint[dicom]'``),
imported only when DICOM-SEG is asked for. highdicom needs the source slices' headers
only, never their pixels, so compressed series (JPEG-Lossless, JPEG 2000) are referenced
as they are. Frame ``i`` of the mask is the slice ``series.files[i]``, the order the
volume was read in (``io.dicom_series.read_series``), so the SEG matches the NIfTI mask
voxel for voxel on the source grid.

Every label of dataset.json but background is one segment, named as there, coded as a
lesion (SNOMED CT "Morphologically abnormal structure" / "Lesion"), made by an automatic
algorithm ("autojoint", its version). The SEG's UIDs are derived from the source series'
UID and the mask, so writing the same prediction again gives the same UIDs (a PACS
replaces the object instead of storing a second one).
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autojoint import __version__
from autojoint.io.dicom_series import DicomSeries
from autojoint.io.files import atomic_write

DICOM_SEG = "dicom-seg"
EXTRA = "dicom"
# The SEG's own series number: high, so viewers list it after the scans of the study.
SEG_SERIES_NUMBER = 9000
# What the source slices must carry for a SEG to reference them.
REQUIRED_UIDS = (
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "FrameOfReferenceUID",
)
# Patient and study attributes a SEG copies from its source. DICOM requires them in every
# CT image but lets them be empty; de-identification often removes them, which means the
# same (unknown), so an absent one is copied as empty.
EMPTY_IF_ABSENT = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
_MAX_LABEL = 64  # Segment Label is an LO: at most 64 characters


class MissingExtraError(RuntimeError):
    """An optional dependency is not installed."""


class SegSourceError(ValueError):
    """The source series cannot be referenced by a DICOM-SEG."""


def require_highdicom() -> None:
    """Fail early, before any case is predicted, when highdicom is missing.

    Raises:
        MissingExtraError: telling how to install it.
    """
    try:
        import highdicom  # noqa: F401
    except ImportError as err:
        raise MissingExtraError(
            "--output-format dicom-seg writes DICOM-SEG with highdicom, which is not "
            f"installed: pip install 'autojoint[{EXTRA}]' (or: bash scripts/setup_env.sh "
            f"{EXTRA}), or predict with --output-format nifti."
        ) from err


@dataclass(frozen=True)
class SegSource:
    """The headers of the slices a SEG references, in the order of ``series.files``."""

    series: DicomSeries
    datasets: tuple[Any, ...]  # pydicom Datasets without pixel data


def _raw_text(ds: Any, keyword: str) -> str:
    """A string element as stored, without pydicom converting (and so validating, with
    warnings that would log the value) it."""
    if keyword not in ds:
        return ""
    value = ds.get_item(keyword).value
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return str(value or "").strip("\x00 ")


def seg_source_problem(series: DicomSeries, datasets: Sequence[Any]) -> str | None:
    """Why a DICOM-SEG cannot reference these slices, or None.

    Each slice needs valid SOP class, SOP instance, study, series and frame-of-reference
    UIDs (de-identification often blanks or replaces them), the instances must differ,
    and the series must be single-frame slices.
    """
    where = f"{series.folder}"
    fix = (
        "A DICOM-SEG must reference its source images by these UIDs: predict the series "
        "as exported from the PACS (with its UIDs), or use --output-format nifti."
    )
    for path, ds in zip(series.files, datasets, strict=True):
        for keyword in REQUIRED_UIDS:
            value = _raw_text(ds, keyword)
            if not value:
                return f"{where}: {path.name} has no {keyword}. {fix}"
            if len(value) > 64 or not _UID.match(value):
                return f"{where}: {path.name} has an invalid {keyword} (not digits and dots). {fix}"
        if int(_raw_text(ds, "NumberOfFrames") or 1) > 1:
            return (
                f"{where}: {path.name} is a multi-frame (enhanced) image; DICOM-SEG output is "
                "written for series of single-frame slices only. Use --output-format nifti."
            )
    uids = [_raw_text(ds, "SOPInstanceUID") for ds in datasets]
    if len(set(uids)) != len(uids):
        return f"{where}: two slices share one SOPInstanceUID. {fix}"
    return None


def load_seg_source(series: DicomSeries) -> SegSource:
    """The headers of the series' slices, checked by :func:`seg_source_problem`.

    Raises:
        MissingExtraError: highdicom (and so pydicom) is not installed.
        SegSourceError: naming the folder, the slice, the reason and the fix.
    """
    require_highdicom()
    import pydicom

    datasets = []
    for path in series.files:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (pydicom.errors.InvalidDicomError, OSError, ValueError) as err:
            raise SegSourceError(f"{series.folder}: {path.name} cannot be read ({err}).") from err
        for keyword in EMPTY_IF_ABSENT:  # in this copy of the header only
            if keyword not in ds:
                setattr(ds, keyword, "")
        datasets.append(ds)
    if problem := seg_source_problem(series, datasets):
        raise SegSourceError(problem)
    return SegSource(series, tuple(datasets))


def _uid(*parts: bytes | str) -> str:
    from pydicom.uid import generate_uid

    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
    return str(generate_uid(entropy_srcs=[digest.hexdigest()]))


def write_dicom_seg(
    path: Path, mask: np.ndarray, source: SegSource, label_names: Mapping[int, str]
) -> None:
    """Write ``mask`` as a binary DICOM-SEG referencing ``source``, atomically.

    Args:
        path: the file to write (``CASE_seg.dcm``).
        mask: label values on the source grid, frame ``i`` = ``source.series.files[i]``.
        source: from :func:`load_seg_source`.
        label_names: label value -> name, for every value > 0 (dataset.json's labels).

    Shape:
        mask ``(num_slices, Rows, Columns)``.

    Raises:
        ValueError: the mask is not on the source grid, or holds undeclared labels.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    mask = np.asarray(mask)
    first = source.datasets[0]
    grid = (len(source.datasets), int(first.Rows), int(first.Columns))
    if mask.shape != grid:
        raise ValueError(f"{path}: mask shape {mask.shape} is not the source grid {grid}.")
    values = sorted(v for v in label_names if v > 0)
    if values != list(range(1, len(values) + 1)) or int(mask.max(initial=0)) > len(values):
        raise ValueError(f"{path}: labels {values} must be 1..K and cover the mask's values.")
    algorithm = hd.AlgorithmIdentificationSequence(
        name="autojoint", version=__version__, family=codes.cid7162.ArtificialIntelligence
    )
    segments = [
        hd.seg.SegmentDescription(
            segment_number=v,
            segment_label=label_names[v][:_MAX_LABEL],
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Lesion,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
        )
        for v in values
    ]
    series_uid = _raw_text(first, "SeriesInstanceUID")
    digest = hashlib.sha256(np.ascontiguousarray(mask, dtype=np.uint8).tobytes()).hexdigest()
    with warnings.catch_warnings():
        # highdicom warns that it fills in optional attributes; nothing for the user to do.
        warnings.simplefilter("ignore", UserWarning)
        seg = hd.seg.Segmentation(
            source_images=list(source.datasets),
            pixel_array=mask.astype(np.uint8),
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=segments,
            series_instance_uid=_uid("series", series_uid, digest, __version__),
            series_number=SEG_SERIES_NUMBER,
            sop_instance_uid=_uid("instance", series_uid, digest, __version__),
            instance_number=1,
            manufacturer="autojoint",
            manufacturer_model_name="autojoint",
            software_versions=__version__,
            device_serial_number="none",
            content_description="autojoint lesion segmentation, research use only",
            content_label="AUTOJOINT",
            series_description="autojoint lesions (research use only)",
            omit_empty_frames=bool(mask.any()),  # an empty SEG keeps its frames
        )
    atomic_write(Path(path), seg.save_as, binary=True)
