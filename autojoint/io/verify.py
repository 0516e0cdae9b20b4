"""Check a raw dataset and a work directory before any long work, listing every problem.

``autojoint_plan --verify`` prints the report; planning calls :func:`require_valid_dataset`
first and refuses with the same messages. Each problem names the file and the fix. Cases
are read one at a time (every voxel: a truncated file or a NaN can hide behind a valid
header), so memory stays at one case whatever the dataset size.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from autojoint.io.case_loading import (
    GEOMETRY_TOLERANCES,
    geometry_differences,
    label_value_problems,
)
from autojoint.io.dataset import RawCase, RawDataset, scan_raw_dataset
from autojoint.io.files import TEMP_PREFIX
from autojoint.io.image_io import ImageGeometry, ImageReadError, read_image

logger = logging.getLogger(__name__)

DATASET = "dataset"
ENVIRONMENT = "environment"

# Air is about -1000 HU; a chest CT without a single voxel below this is not in HU
# (raw stored values without rescale slope/intercept, MR, or an already normalised image).
CT_MIN_EXPECTED_HU = -200.0
# Warn when free disk space is below this multiple of the float32 size of all images.
DISK_SPACE_FACTOR = 2.0


@dataclass(frozen=True)
class Problem:
    """One finding. ``message`` names the file and the fix; ``kind`` is ``"dataset"`` or
    ``"environment"``; warnings do not stop planning."""

    message: str
    kind: str = DATASET
    is_error: bool = True

    def __str__(self) -> str:
        return f"{'error' if self.is_error else 'warning'}: {self.message}"


@dataclass(frozen=True)
class VerifyReport:
    """Every problem of a dataset (and work directory); ``dataset`` is the layout that
    loaded (None when dataset.json or imagesTr is unusable)."""

    root: Path
    dataset: RawDataset | None
    problems: tuple[Problem, ...]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.is_error]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if not p.is_error]

    @property
    def has_dataset_errors(self) -> bool:
        return any(p.kind == DATASET for p in self.errors)

    @property
    def has_environment_errors(self) -> bool:
        return any(p.kind == ENVIRONMENT for p in self.errors)

    def summary(self) -> str:
        num_cases = len(self.dataset.cases) if self.dataset is not None else 0
        return (
            f"{self.root}: {len(self.errors)} error(s), {len(self.warnings)} warning(s) "
            f"in {num_cases} readable case(s)"
        )

    def format(self) -> str:
        """All problems, one per line, errors first, then the summary line."""
        lines = [str(p) for p in self.errors + self.warnings]
        return "\n".join([*lines, self.summary()])


class DatasetProblems(ValueError):
    """The raw dataset has errors; the message lists all of them."""

    def __init__(self, report: VerifyReport) -> None:
        self.report = report
        errors = report.errors
        lines = "\n".join(f"  - {p.message}" for p in errors)
        super().__init__(
            f"{report.root}: {len(errors)} problem(s); fix them and rerun "
            f"(autojoint_plan --verify -d {report.root} lists them again):\n{lines}"
        )


class EnvironmentProblem(OSError):
    """The machine cannot run the job as asked (work directory not writable, no space)."""


def check_work_dir(work_dir: Path) -> list[Problem]:
    """Problems with writing into ``work_dir``, found without leaving anything behind.

    A missing work directory is fine when its nearest existing parent is writable (it is
    created later); the probe is a temp file created and deleted at once.
    """
    work_dir = Path(work_dir)
    existing = work_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return [
            Problem(
                f"{work_dir}: cannot create the work directory: {existing} is a file, not a "
                "folder. Choose another -w/--work-dir.",
                ENVIRONMENT,
            )
        ]
    try:
        fd, probe = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".part", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        return [
            Problem(
                f"{work_dir}: not writable ({err.strerror or err} in {existing}); choose a "
                "writable -w/--work-dir or fix its permissions.",
                ENVIRONMENT,
            )
        ]
    return []


def ct_range_warning(path: Path, array: np.ndarray) -> str | None:
    """A warning when a channel named CT does not look like Hounsfield units."""
    if array.size == 0:
        return None
    low = float(array.min())
    if low > CT_MIN_EXPECTED_HU:
        return (
            f"{path}: channel is named CT but no voxel is below {CT_MIN_EXPECTED_HU:g} HU "
            f"(range {low:g}..{float(array.max()):g}); CT holds air at about -1000 HU. If "
            "the values are not Hounsfield units, apply the rescale slope/intercept, or name "
            "the channel otherwise in dataset.json (then it is z-scored per image)."
        )
    return None


def check_case(
    case: RawCase, labels: dict[str, int], channel_names: dict[str, str]
) -> tuple[list[Problem], int]:
    """Every problem of one case's files; returns ``(problems, number of image voxels)``.

    Reads each file completely, one at a time, and keeps only the first channel's grid.
    """
    problems: list[Problem] = []
    first: tuple[Path, ImageGeometry] | None = None
    voxels = 0
    ct_flags = [name.strip().upper() == "CT" for _, name in sorted(channel_names.items())]
    for i, path in enumerate(case.image_paths):
        try:
            arr, geo = read_image(path)
        except ImageReadError as err:
            problems.append(Problem(str(err)))
            continue
        voxels += arr.size
        if i < len(ct_flags) and ct_flags[i]:
            warning = ct_range_warning(path, arr)
            if warning:
                problems.append(Problem(warning, is_error=False))
        del arr
        if first is None:
            first = (path, geo)
        elif diffs := geometry_differences(geo, first[1]):
            problems.append(
                Problem(
                    f"{path}: grid differs from {first[0].name}: {'; '.join(diffs)} "
                    f"(tolerances: {GEOMETRY_TOLERANCES}); resample all channels to one grid."
                )
            )
    if case.label_path is not None:
        try:
            mask, mask_geo = read_image(case.label_path, dtype=np.float64)
        except ImageReadError as err:
            problems.append(Problem(str(err)))
        else:
            if first is not None and (diffs := geometry_differences(mask_geo, first[1])):
                problems.append(
                    Problem(
                        f"{case.label_path}: mask grid differs from its image "
                        f"{first[0].name}: {'; '.join(diffs)} (tolerances: "
                        f"{GEOMETRY_TOLERANCES}); resample the mask onto the image grid "
                        "with nearest-neighbour interpolation."
                    )
                )
            problems.extend(
                Problem(m) for m in label_value_problems(case.label_path, mask, len(labels))
            )
    return problems, voxels


def _check_case_args(
    args: tuple[RawCase, dict[str, int], dict[str, str]],
) -> tuple[list[Problem], int]:
    return check_case(*args)


def verify_dataset(
    raw_dir: Path, work_dir: Path | None = None, *, num_workers: int = 1
) -> VerifyReport:
    """Check the layout, every case's files and (if given) the work directory.

    Never raises for a bad dataset: every problem is in the report. Writes nothing.
    """
    raw_dir = Path(raw_dir)
    problems: list[Problem] = []
    if work_dir is not None:
        problems += check_work_dir(work_dir)
    dataset, layout = scan_raw_dataset(raw_dir)
    problems += [Problem(str(e)) for e in layout]
    if dataset is not None:
        problems += _orphan_masks(dataset)
    total_voxels = 0
    if dataset is not None and dataset.cases:
        jobs = [(c, dataset.labels, dataset.channel_names) for c in dataset.cases]
        bar = {"total": len(jobs), "desc": "verify", "unit": "case"}
        if num_workers > 1:
            with ProcessPoolExecutor(num_workers) as pool:
                results = list(tqdm(pool.map(_check_case_args, jobs), **bar))
        else:
            results = [check_case(*job) for job in tqdm(jobs, **bar)]
        for case_problems, voxels in results:
            problems += case_problems
            total_voxels += voxels
    if work_dir is not None and total_voxels:
        problems += _disk_space_warning(Path(work_dir), total_voxels)
    return VerifyReport(raw_dir, dataset, tuple(problems))


def _orphan_masks(dataset: RawDataset) -> list[Problem]:
    """Masks in labelsTr/ whose case has no image: ignored by planning, probably a typo."""
    labels_dir = dataset.root / "labelsTr"
    if not labels_dir.is_dir():
        return []
    used = {c.label_path for c in dataset.cases}
    return [
        Problem(
            f"{p}: mask without an image CASE_0000{dataset.file_ending} in imagesTr; it is "
            "ignored. Rename it to match its image or remove it.",
            is_error=False,
        )
        for p in sorted(labels_dir.iterdir())
        if p.name.endswith(dataset.file_ending) and not p.name.startswith(".") and p not in used
    ]


def _disk_space_warning(work_dir: Path, total_voxels: int) -> list[Problem]:
    existing = work_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return []
    need = DISK_SPACE_FACTOR * 4 * total_voxels  # float32 preprocessed copies
    free = shutil.disk_usage(existing).free
    if free < need:
        return [
            Problem(
                f"{work_dir}: {free / 1e9:.1f} GB free, preprocessing may need about "
                f"{need / 1e9:.1f} GB; free space or choose another -w/--work-dir.",
                ENVIRONMENT,
                is_error=False,
            )
        ]
    return []


def require_valid_dataset(
    raw_dir: Path, work_dir: Path | None = None, *, num_workers: int = 1
) -> RawDataset:
    """The dataset, after :func:`verify_dataset` found no error; warnings are logged.

    Raises:
        DatasetProblems: the dataset has errors (all listed in the message).
        EnvironmentProblem: only the work directory is unusable.
    """
    report = verify_dataset(raw_dir, work_dir, num_workers=num_workers)
    for p in report.warnings:
        logger.warning("%s", p.message)
    if report.has_dataset_errors or report.dataset is None:
        raise DatasetProblems(report)
    if report.has_environment_errors:
        raise EnvironmentProblem("\n".join(p.message for p in report.errors))
    return report.dataset
