"""The dataset fingerprint file (``fingerprint.json``): what the planner knows of the data.

Undefined statistics (no masked case, no lesion component) are ``nan`` in memory and
``null`` in the file; :meth:`Fingerprint.load` turns ``null`` back into ``nan``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from autojoint.io.files import read_json, write_json
from autojoint.io.typed_json import field_problems, from_json

FINGERPRINT_SCHEMA_VERSION = 1

# Key of the union of all non-zero labels in the lesion statistics.
ALL_LESIONS = "lesion"

# Keys of the component size percentiles, and the percentile each stands for.
PERCENTILES: dict[str, float] = {"p05": 5.0, "p25": 25.0, "p50": 50.0, "p75": 75.0, "p95": 95.0}


@dataclass(frozen=True)
class IntensityStats:
    """Statistics of sampled foreground voxels of one channel."""

    mean: float
    std: float
    median: float
    min: float
    max: float
    percentile_00_5: float
    percentile_99_5: float


@dataclass(frozen=True)
class LesionStats:
    """Dataset-level statistics of one lesion label (or of all lesions, key ``"lesion"``).

    Attributes:
        num_cases_with_mask: cases that have a mask at all.
        num_cases_with_label: masked cases in which the label occurs.
        mean_voxel_fraction: mean over masked cases of the label's share of the scan.
        components_per_case_mean: mean over masked cases of the number of connected
            components (26-connectivity), cases without the label counting 0.
        components_per_case_median: median of the same.
        volume_mm3_percentiles: ``p05``..``p95`` of the volumes of all components of all
            cases, mm³.
        equivalent_diameter_mm_percentiles: the same for the diameter of the sphere of equal
            volume, ``(6 V / pi) ** (1/3)``, mm.

    Every float is NaN when there is nothing to average (no masked case, no component).
    """

    num_cases_with_mask: int
    num_cases_with_label: int
    mean_voxel_fraction: float
    components_per_case_mean: float
    components_per_case_median: float
    volume_mm3_percentiles: dict[str, float]
    equivalent_diameter_mm_percentiles: dict[str, float]


@dataclass(frozen=True)
class CaseFingerprint:
    """Per-case facts; spacing and shapes in ``(z, y, x)``.

    ``label_voxel_fraction`` is per lesion label, over the whole scan (NaN without a mask).
    ``lesion_components`` holds, per lesion label and for ``"lesion"`` (all non-zero labels),
    the volume in mm³ of each connected component (26-connectivity) inside the body crop,
    largest first; ``{}`` for a case without a mask. ``is_2d``: the case is a 2D image, held
    as one slice of nominal thickness 1 mm (so its component "volumes" are areas in mm²).
    """

    case_id: str
    shape: tuple[int, int, int]
    shape_after_crop: tuple[int, int, int]
    spacing: tuple[float, float, float]
    direction: tuple[float, ...]
    has_label: bool
    diagnosis: str | None
    label_voxel_fraction: dict[str, float]
    lesion_components: dict[str, list[float]]
    is_2d: bool = False


@dataclass(frozen=True)
class Fingerprint:
    """Dataset fingerprint; ``intensity`` holds one entry per channel, ``lesion_stats`` one
    per lesion label plus ``"lesion"`` for all non-zero labels together. ``is_2d``: every
    case is a 2D image (a dataset never mixes 2D and 3D; ``compute_fingerprint`` refuses)."""

    channel_names: dict[str, str]
    labels: dict[str, int]
    classes: tuple[str, ...]
    cases: tuple[CaseFingerprint, ...]
    intensity: tuple[IntensityStats, ...]
    diagnosis_counts: dict[str, int]
    num_cases_without_label: int
    num_cases_without_diagnosis: int
    lesion_stats: dict[str, LesionStats]
    is_2d: bool = False
    schema_version: int = FINGERPRINT_SCHEMA_VERSION

    @property
    def num_dims(self) -> int:
        """Dimensionality of the images: 2 or 3."""
        return 2 if self.is_2d else 3

    def save(self, path: Path) -> None:
        write_json(asdict(self), path)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "fingerprint") -> Fingerprint:
        """Build from the dict :meth:`save` writes.

        Raises:
            ValueError: other schema_version, or a key missing or of the wrong type (naming
                ``source``).
        """
        if not isinstance(d, Mapping):
            raise ValueError(
                f"{source}: must hold a JSON object (a fingerprint), found {type(d).__name__}; "
                "rerun autojoint_plan."
            )
        version = d.get("schema_version")
        if version != FINGERPRINT_SCHEMA_VERSION:
            raise ValueError(
                f"{source}: fingerprint schema_version {version} is not supported "
                f"(expected {FINGERPRINT_SCHEMA_VERSION}); rerun autojoint_plan."
            )
        mismatches = field_problems(cls, dict(d), null_floats=True)
        if mismatches:
            raise ValueError(
                f"{source}: fingerprint {'; '.join(mismatches[:8])}"
                f"{' ...' if len(mismatches) > 8 else ''}: it does not match the fingerprint "
                "schema (another version, or edited). Rerun autojoint_plan."
            )
        return from_json(cls, d, null_floats=True)

    @classmethod
    def load(cls, path: Path) -> Fingerprint:
        return cls.from_dict(read_json(path), source=str(path))
