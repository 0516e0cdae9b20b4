"""DICOM series in a folder: which series it holds, which one to read, and whether its
slices form the regular grid SimpleITK will put them on.

SimpleITK's series reader stacks the files it is given as evenly spaced slices along the
slice normal: slice ``i`` is placed at ``first + i * (last - first) / (N - 1)``, and only a
warning on stderr says when that is false. A folder with several series, a missing slice,
uneven spacing or a tilted gantry would therefore become a plausible volume on a wrong
grid; each is refused here with the folder, the reason and the fix (docs/prediction.md,
"DICOM input").

Tags are read with SimpleITK's GDCM header reader (no pixel is decoded), so compressed
series (JPEG-Lossless, JPEG 2000) are checked as cheaply as plain ones.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from autojoint.io.dicom_zip import is_zip, unpacked

logger = logging.getLogger(__name__)

AUTO = "auto"  # the --series-uid keyword for the rule of :func:`choose_series`

# A slice may lie off the even grid SimpleITK builds by at most this fraction of the slice
# step. 1 % misplaces a slice by 0.05 mm at 5 mm slices, far below what a model resolves,
# and positions written with two decimals stay within it at 0.625 mm slices; a missing or
# doubled slice, a spacing that changes within the series, or two stacks in one series
# are far above it.
SPACING_TOLERANCE = 0.01
# A step this many times the median step is a gap: slices are missing there.
GAP_FACTOR = 1.5
# Slice positions may drift sideways (across the image plane) over the whole series by at
# most this fraction of a pixel: beyond it, stacking slices straight (what SimpleITK does)
# shifts anatomy by a visible amount. A gantry tilt of 1 degree drifts 5 mm over 30 cm.
TILT_TOLERANCE_PIXELS = 0.5
# Direction cosines of two slices closer than this are one orientation (header round-off).
ORIENTATION_ATOL = 1e-4

_MODALITY, _SERIES_UID, _DESCRIPTION = "0008|0060", "0020|000e", "0008|103e"
_POSITION, _ORIENTATION, _PIXEL_SPACING, _TILT = "0020|0032", "0020|0037", "0028|0030", "0018|1120"
_ROWS, _COLUMNS = "0028|0010", "0028|0011"


class DicomSeriesError(ValueError):
    """A DICOM folder holds no usable series, several without a choice, or a series whose
    slices are not a regular grid (the message names the folder and the fix)."""


@dataclass(frozen=True)
class DicomSeries:
    """One image series of a folder, as GDCM groups and sorts its files.

    Attributes:
        folder: the folder holding the files.
        series_uid: the SeriesInstanceUID tag ('' when absent, e.g. de-identified).
        gdcm_id: GDCM's id for the series (the UID, cleaned of characters a UID may not
            hold); accepted by ``--series-uid`` too.
        description: SeriesDescription ('' when absent).
        modality: Modality ('' when absent).
        orientation: ImageOrientationPatient of the first slice (row, then column cosines).
        files: the slices, in GDCM's order along the slice normal.
    """

    folder: Path
    series_uid: str
    gdcm_id: str
    description: str
    modality: str
    orientation: tuple[float, ...]
    files: tuple[Path, ...]

    @property
    def num_slices(self) -> int:
        return len(self.files)

    @property
    def is_axial(self) -> bool:
        """The slice normal is closest to the patient's head-feet axis."""
        normal = _normal(self.orientation)
        return bool(normal is not None and int(np.argmax(np.abs(normal))) == 2)

    def describe(self) -> str:
        """One line of the series list shown when a folder holds several."""
        uid = self.series_uid or "(no SeriesInstanceUID)"
        return (
            f"SeriesInstanceUID {uid}, SeriesDescription '{self.description}', "
            f"{self.num_slices} slice(s), Modality {self.modality or '(none)'}"
            f"{'' if self.is_axial else ', not axial'}"
        )

    def matches(self, uid: str) -> bool:
        return bool(uid) and uid in (self.series_uid, self.gdcm_id)


@dataclass(frozen=True)
class SeriesChoice:
    """Which series to read from a folder holding several (``--series-uid``).

    Attributes:
        uids: SeriesInstanceUIDs to read where a folder holds them (a folder holding none
            of them, but several series, is refused unless ``use_auto``).
        use_auto: otherwise pick by the rule of :func:`choose_series`.
    """

    uids: tuple[str, ...] = ()
    use_auto: bool = False

    @classmethod
    def parse(cls, values: Sequence[str] | None) -> SeriesChoice:
        """From ``--series-uid`` values: UIDs, and the keyword ``auto``."""
        values = list(values or [])
        return cls(tuple(v for v in values if v != AUTO), AUTO in values)


NO_CHOICE = SeriesChoice()  # no --series-uid: a folder must hold one series


@dataclass(frozen=True)
class SeriesPick:
    """The series read from a folder, and how it was chosen among ``num_series``."""

    series: DicomSeries
    num_series: int
    rule: str  # "only series", "--series-uid" or "--series-uid auto: ..."

    def to_dict(self) -> dict[str, object]:
        """What a case's record keeps of the choice (only made when there was one)."""
        s = self.series
        return {
            "series_uid": s.series_uid,
            "description": s.description,
            "modality": s.modality,
            "num_slices": s.num_slices,
            "num_series_in_folder": self.num_series,
            "chosen_by": self.rule,
        }


def _normal(orientation: Sequence[float]) -> np.ndarray | None:
    if len(orientation) != 6:
        return None
    normal = np.cross(orientation[:3], orientation[3:])
    norm = float(np.linalg.norm(normal))
    return normal / norm if norm > 1e-6 else None


def _tags(path: Path, keys: Sequence[str]) -> dict[str, str] | None:
    """The values of ``keys`` present in the file's header, None if it is not an image."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None
    return {k: reader.GetMetaData(k).strip() for k in keys if reader.HasMetaDataKey(k)}


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split("\\"))
    except ValueError:
        return ()


def list_series(folder: Path) -> list[DicomSeries]:
    """The image series directly in ``folder`` (not its sub-folders).

    Series without Image Position (Patient) in their first file are not cross-sectional
    images (structured reports, presentation states, RT structures, DICOM-SEG objects)
    and are left out.
    """
    folder = Path(folder)
    found = []
    for gdcm_id in sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)):
        names = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), gdcm_id)
        if not names:
            continue
        tags = _tags(
            Path(names[0]), (_MODALITY, _SERIES_UID, _DESCRIPTION, _POSITION, _ORIENTATION)
        )
        if tags is None or _POSITION not in tags:
            logger.debug(
                "%s: series of %d file(s) is not an image series; ignored", folder, len(names)
            )
            continue
        found.append(
            DicomSeries(
                folder=folder,
                series_uid=tags.get(_SERIES_UID, ""),
                gdcm_id=gdcm_id,
                description=tags.get(_DESCRIPTION, ""),
                modality=tags.get(_MODALITY, "").upper(),
                orientation=_floats(tags.get(_ORIENTATION, "")),
                files=tuple(Path(n) for n in names),
            )
        )
    return found


def _listing(series: Sequence[DicomSeries]) -> str:
    return "; ".join(f"[{i + 1}] {s.describe()}" for i, s in enumerate(series))


def choose_series(folder: Path, choice: SeriesChoice = NO_CHOICE) -> SeriesPick:
    """The series to read from ``folder``.

    One image series: that one. Several: the one whose UID is in ``choice.uids``; else,
    with ``choice.use_auto``, the axial CT series with the most slices, when exactly one
    has that many. Anything else is refused with the list of series.

    Raises:
        DicomSeriesError: no image series, or several and no single one chosen.
    """
    series = list_series(folder)
    if not series:
        raise DicomSeriesError(
            f"{folder}: directory holds no DICOM series; pass a NIfTI file or a folder of "
            "DICOM slices of one series."
        )
    if len(series) == 1:
        return SeriesPick(series[0], 1, "only series")
    named = [s for s in series if any(s.matches(uid) for uid in choice.uids)]
    if len(named) == 1:
        return SeriesPick(named[0], len(series), "--series-uid")
    if len(named) > 1:
        raise DicomSeriesError(
            f"{folder}: several of the --series-uid values name series of this folder: "
            f"{_listing(named)}. Give one UID per folder."
        )
    if choice.use_auto:
        axial_ct = [s for s in series if s.modality == "CT" and s.is_axial]
        most = max((s.num_slices for s in axial_ct), default=0)
        top = [s for s in axial_ct if s.num_slices == most]
        if len(top) == 1:
            return SeriesPick(
                top[0], len(series), "--series-uid auto: the axial CT series with the most slices"
            )
        why = (
            f"{len(top)} axial CT series have the most slices ({most})"
            if top
            else "none is an axial CT series"
        )
        raise DicomSeriesError(
            f"{folder}: holds {len(series)} DICOM series and --series-uid auto cannot choose: "
            f"{why}. Series: {_listing(series)}. Pick one with --series-uid UID, or keep one "
            "series per folder."
        )
    raise DicomSeriesError(
        f"{folder}: holds {len(series)} DICOM series: {_listing(series)}. autojoint does not "
        "guess which one to predict: pick one with --series-uid UID, or let --series-uid auto "
        "take the axial CT series with the most slices, or keep one series per folder."
    )


def series_problem(series: DicomSeries, *, modality: str | None = None) -> str | None:
    """Why the slices of ``series`` are not the grid SimpleITK will read them as, or None.

    Refused: another ``modality`` than the one asked for; slices of different orientations
    or sizes (rows, columns); slices without a position; two slices at one position; gantry
    tilt (slices stacked at an angle to their normal, :data:`TILT_TOLERANCE_PIXELS`);
    missing slices (a step over :data:`GAP_FACTOR` times the median); uneven spacing (a
    slice off the even grid by more than :data:`SPACING_TOLERANCE` of the step); files
    not in position order.
    """
    where = str(series.folder)  # no UID: no DICOM identifier goes into a log for nothing
    if modality is not None and series.modality != modality.upper():
        return (
            f"{where}: Modality is {series.modality or '(none)'}, but this model reads "
            f"{modality} scans; give the {modality} series of the study."
        )
    keys = (_POSITION, _ORIENTATION, _PIXEL_SPACING, _TILT, _ROWS, _COLUMNS)
    positions, first_tilt, pixel, size = [], "", 1.0, None
    for path in series.files:
        tags = _tags(path, keys) or {}
        if size is None:
            size = (tags.get(_ROWS), tags.get(_COLUMNS))
        elif (tags.get(_ROWS), tags.get(_COLUMNS)) != size:
            return (
                f"{where}: {path.name} has another size than {series.files[0].name} (rows, "
                "columns); keep only the slices of one stack in the folder."
            )
        position = _floats(tags.get(_POSITION, ""))
        if len(position) != 3:
            return f"{where}: {path.name} has no Image Position (Patient); export the series again."
        orientation = _floats(tags.get(_ORIENTATION, ""))
        if len(orientation) != 6 or not np.allclose(
            orientation, series.orientation, atol=ORIENTATION_ATOL
        ):
            return (
                f"{where}: {path.name} has another orientation than {series.files[0].name} "
                "(a localizer or a reformat mixed into the series?); keep only the slices "
                "of one stack in the folder."
            )
        spacing = _floats(tags.get(_PIXEL_SPACING, ""))
        pixel = min(spacing) if len(spacing) == 2 and min(spacing) > 0 else pixel
        first_tilt = first_tilt or tags.get(_TILT, "")
        positions.append(position)
    normal = _normal(series.orientation)
    if normal is None:
        return f"{where}: Image Orientation (Patient) is not two unit vectors; export it again."
    if len(positions) < 2:
        return None
    points = np.array(positions)
    along = points @ normal
    problem = _stack_problem(where, series, points, along, normal, pixel, first_tilt)
    if problem is None and not (np.all(np.diff(along) > 0) or np.all(np.diff(along) < 0)):
        # GDCM sorts the files by position; the reader and a DICOM-SEG rely on that order.
        return f"{where}: the slice files are not in position order; export the series again."
    return problem


def _stack_problem(
    where: str,
    series: DicomSeries,
    points: np.ndarray,
    along: np.ndarray,
    normal: np.ndarray,
    pixel: float,
    first_tilt: str,
) -> str | None:
    """The duplicate, tilt, gap and spacing rules of :func:`series_problem` on the slice
    positions (``points`` mm, ``along`` their projection on the normal, file order)."""
    order = np.argsort(along)
    points, along = points[order], along[order]
    names = [series.files[i].name for i in order]
    steps = np.diff(along)
    median = float(np.median(steps))
    if float(steps.min()) < SPACING_TOLERANCE * max(median, 1e-3):
        i = int(np.argmin(steps))
        return (
            f"{where}: {names[i]} and {names[i + 1]} lie at the same position "
            f"({along[i]:.2f} mm along the slice normal): two acquisitions or a duplicated "
            "slice in one series. Keep one of them in the folder."
        )
    span = points[-1] - points[0]
    drift = float(np.linalg.norm(span - (span @ normal) * normal))
    if drift > TILT_TOLERANCE_PIXELS * pixel:
        angle = math.degrees(math.atan2(drift, abs(float(span @ normal))))
        tag = f"; GantryDetectorTilt {first_tilt}" if first_tilt else ""
        return (
            f"{where}: slices are stacked at {angle:.1f} degrees to their normal (gantry "
            f"tilt{tag}): read as a straight stack, the last slice would be shifted by "
            f"{drift:.1f} mm. Reconstruct the series without tilt, or convert it with a "
            "tool that corrects gantry tilt (e.g. dcm2niix) and give the NIfTI file."
        )
    gaps = np.flatnonzero(steps > GAP_FACTOR * median)
    if gaps.size:
        i = int(gaps[0])
        missing = sum(round(float(steps[g]) / median) - 1 for g in gaps)
        return (
            f"{where}: about {missing} slice(s) are missing ({gaps.size} gap(s); the first "
            f"between {names[i]} at {along[i]:.2f} mm and {names[i + 1]} at "
            f"{along[i + 1]:.2f} mm, where the step is {median:.3g} mm). Export the complete "
            "series again."
        )
    step = (along[-1] - along[0]) / (len(along) - 1)
    off = np.abs(along - (along[0] + step * np.arange(len(along))))
    if float(off.max()) > SPACING_TOLERANCE * step:
        i = int(np.argmax(off))
        return (
            f"{where}: uneven slice spacing: steps range from {steps.min():.3f} to "
            f"{steps.max():.3f} mm, and {names[i]} lies {off[i]:.3f} mm off the even grid "
            f"(more than {SPACING_TOLERANCE:.0%} of the {step:.3f} mm step). Resample the "
            "series to even spacing (e.g. convert it with dcm2niix) and give the NIfTI file."
        )
    return None


def read_series(series: DicomSeries) -> sitk.Image:
    """The series' slices as one SimpleITK volume (rescale slope and intercept applied),
    in the order of ``series.files``.

    Raises:
        DicomSeriesError: the pixel data cannot be decoded.
    """
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(p) for p in series.files])
    try:
        return reader.Execute()
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1] if str(err).strip() else ""
        raise DicomSeriesError(
            f"{series.folder}: the DICOM slices cannot be decoded ({first}); export the "
            "series again, uncompressed if the problem persists."
        ) from err


@contextmanager
def dicom_folder(path: Path) -> Iterator[Path]:
    """The folder of a DICOM input: ``path`` itself, or a zip's files unpacked into a
    temporary folder for the duration of the ``with`` block.

    An input error (a ``ValueError``) raised in the block names the zip instead of the
    temporary folder, which the user never saw.

    Raises:
        DicomZipError: an unsafe or unreadable zip.
    """
    path = Path(path)
    if not is_zip(path):
        yield path
        return
    with unpacked(path) as folder:
        try:
            yield folder
        except ValueError as err:
            if str(folder) not in str(err):
                raise
            raise type(err)(str(err).replace(str(folder), str(path))) from err
