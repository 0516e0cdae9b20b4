"""What a shared model (``autojoint_export_model``'s zip) holds, and its manifest.

A model zip holds a work directory's files at their work-dir paths, so an installed model
*is* a work directory: ``autojoint_predict -w`` and ``autojoint.api.Predictor`` read it
as they read the original (docs/model_sharing.md). Beside them: ``autojoint_model.json``
(this module's :class:`ModelManifest`: which variant, configuration, checkpoint and folds,
and the SHA-256 of every other member, so an install checks it got exactly what was
exported) and the model card (``model_card.md``, ``model_card.json``).
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

from autojoint.io.files import read_json, write_json
from autojoint.io.typed_json import field_problems, from_json
from autojoint.io.workdir import DEFAULT_VARIANT

MANIFEST_FILE = "autojoint_model.json"
MODEL_CARD_MD = "model_card.md"
MODEL_CARD_JSON = "model_card.json"
MANIFEST_SCHEMA_VERSION = 1
# What predict needs beside the folds' checkpoints: the plan (its top-level configuration
# is the default of -c). The fingerprint only feeds the model card; dataset.json (written
# from the plan) states the inputs the model expects, in the raw dataset's format.
PLANS_MEMBER = "plans.json"
FINGERPRINT_MEMBER = "fingerprint.json"
DATASET_MEMBER = "dataset.json"
# Per fold, beside the checkpoint: the final validation's summary (cross-validation figures
# of the model card).
FOLD_EXTRAS = ("validation/summary.json",)
# Choices made after training that prediction may read, shipped when present in the work
# dir, the configuration's folder or the variant's folder (at the same relative path), so a
# later tool's file travels with the model without this module knowing its format.
OPTIONAL_MODEL_FILES = ("calibration.json", "best_configuration.json", "postprocessing.json")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ModelManifest:
    """``autojoint_model.json``: what a model zip (or an installed model) holds.

    Attributes:
        autojoint_version: the version that exported it.
        created: when it was exported (ISO 8601, UTC).
        variant, configuration, checkpoint, folds: the model: what ``autojoint_predict``
            needs as ``--variant``, ``-c``, ``-chk`` and ``-f`` to predict with it.
        files: every other member (work-dir relative path, ``/``-separated) -> its SHA-256.
    """

    autojoint_version: str
    created: str
    variant: str
    configuration: str
    checkpoint: str
    folds: tuple[str, ...]
    files: dict[str, str]
    schema_version: int = MANIFEST_SCHEMA_VERSION

    @property
    def predict_flags(self) -> list[str]:
        """``autojoint_predict`` flags that select this model in its installed work dir."""
        flags = ["-c", self.configuration]
        if self.variant != DEFAULT_VARIANT:
            flags += ["--variant", self.variant]
        if self.checkpoint != "checkpoint_final.pt":
            flags += ["-chk", self.checkpoint]
        return flags

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: object, source: str) -> ModelManifest:
        """Check and build a manifest read from ``source``.

        Raises:
            ValueError: another schema version or a malformed manifest (naming ``source``).
        """
        version = data.get("schema_version") if isinstance(data, dict) else None
        if not isinstance(data, dict) or version != MANIFEST_SCHEMA_VERSION:
            raise ValueError(
                f"{source}: model manifest schema_version {version} is not supported "
                f"(expected {MANIFEST_SCHEMA_VERSION}); export the model again with this "
                "autojoint version (autojoint_export_model)."
            )
        problems = field_problems(cls, data)
        if problems:
            raise ValueError(
                f"{source}: malformed model manifest ({'; '.join(problems[:5])}); export the "
                "model again (autojoint_export_model)."
            )
        return from_json(cls, data)


def read_manifest(work_dir: Path) -> ModelManifest | None:
    """The manifest of an installed model in ``work_dir``, or None (a work dir that trained
    its own folds).

    Raises:
        ValueError: the manifest exists but is malformed.
    """
    path = Path(work_dir) / MANIFEST_FILE
    if not path.is_file():
        return None
    return ModelManifest.from_dict(read_json(path), str(path))


def write_manifest(manifest: ModelManifest, path: Path) -> None:
    """Write ``manifest`` atomically."""
    write_json(manifest.to_dict(), path)


def sha256_of(path: Path) -> str:
    """SHA-256 of a file's bytes, read in chunks (checkpoints may be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
