"""The dataset fingerprint file (``fingerprint.json``): what the planner knows of the data."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from autojoint.io.files import read_json, write_json

FINGERPRINT_SCHEMA_VERSION = 1


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
class CaseFingerprint:
    """Per-case facts; spacing and shapes in ``(z, y, x)``."""

    case_id: str
    shape: tuple[int, int, int]
    shape_after_crop: tuple[int, int, int]
    spacing: tuple[float, float, float]
    direction: tuple[float, ...]
    has_label: bool
    diagnosis: str | None
    label_voxel_fraction: dict[str, float]


@dataclass(frozen=True)
class Fingerprint:
    """Dataset fingerprint; ``intensity`` holds one entry per channel."""

    channel_names: dict[str, str]
    labels: dict[str, int]
    classes: tuple[str, ...]
    cases: tuple[CaseFingerprint, ...]
    intensity: tuple[IntensityStats, ...]
    diagnosis_counts: dict[str, int]
    num_cases_without_label: int
    num_cases_without_diagnosis: int
    schema_version: int = FINGERPRINT_SCHEMA_VERSION

    def save(self, path: Path) -> None:
        write_json(asdict(self), path)

    @classmethod
    def load(cls, path: Path) -> Fingerprint:
        d = read_json(path)
        version = d.get("schema_version")
        if version != FINGERPRINT_SCHEMA_VERSION:
            raise ValueError(
                f"{path}: fingerprint schema_version {version} is not supported "
                f"(expected {FINGERPRINT_SCHEMA_VERSION}); rerun autojoint_plan."
            )
        return cls(
            channel_names=d["channel_names"],
            labels=d["labels"],
            classes=tuple(d["classes"]),
            cases=tuple(
                CaseFingerprint(
                    case_id=c["case_id"],
                    shape=tuple(c["shape"]),
                    shape_after_crop=tuple(c["shape_after_crop"]),
                    spacing=tuple(c["spacing"]),
                    direction=tuple(c["direction"]),
                    has_label=c["has_label"],
                    diagnosis=c["diagnosis"],
                    label_voxel_fraction=c["label_voxel_fraction"],
                )
                for c in d["cases"]
            ),
            intensity=tuple(IntensityStats(**s) for s in d["intensity"]),
            diagnosis_counts=d["diagnosis_counts"],
            num_cases_without_label=d["num_cases_without_label"],
            num_cases_without_diagnosis=d["num_cases_without_diagnosis"],
        )
