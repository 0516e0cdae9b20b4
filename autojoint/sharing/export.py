"""``autojoint_export_model``: one trained variant of a work dir as a zip to share.

The zip holds the work-dir files prediction reads (the folds' checkpoints and
``plans.json``), the files that describe the model (``fingerprint.json``, a
``dataset.json`` of its inputs and outputs, each fold's validation summary, any of
:data:`~autojoint.sharing.package.OPTIONAL_MODEL_FILES`), the model card and the manifest
(``autojoint_model.json``, written last). Checkpoints are copied byte for byte, so an
installed copy predicts exactly as the original; each is loaded first with
``torch.load(weights_only=True)``, so a zip never ships one an install would refuse.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autojoint import __version__
from autojoint.fingerprint.schema import Fingerprint
from autojoint.inference.ensemble import DEFAULT_CHECKPOINT, available_folds
from autojoint.io.files import FILE_MODE, TEMP_PREFIX, read_json
from autojoint.io.variants import resolve_variant
from autojoint.io.workdir import DEFAULT_VARIANT, configuration_dir, fold_dir
from autojoint.planning.schema import Plan
from autojoint.runtime.checkpoint import read_checkpoint
from autojoint.sharing.model_card import build_model_card, render_model_card
from autojoint.sharing.package import (
    DATASET_MEMBER,
    FINGERPRINT_MEMBER,
    FOLD_EXTRAS,
    MANIFEST_FILE,
    MODEL_CARD_JSON,
    MODEL_CARD_MD,
    OPTIONAL_MODEL_FILES,
    PLANS_MEMBER,
    ModelManifest,
    sha256_of,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportOptions:
    """Which model of the work dir to export (the flags of ``autojoint_export_model``,
    named as ``autojoint_predict``'s).

    Attributes:
        variant: the trained variant (None: the default one; ``io.variants.resolve_variant``).
        configuration: ``fullres``, ``lowres`` or ``2d``.
        folds: folds to ship (None: every fold holding ``checkpoint``).
        checkpoint: which checkpoint of each fold.
    """

    variant: str | None = None
    configuration: str = "fullres"
    folds: tuple[str, ...] | None = None
    checkpoint: str = DEFAULT_CHECKPOINT


def _relative(path: Path, work_dir: Path) -> str:
    return path.relative_to(work_dir).as_posix()


def _plan_of_folds(work_dir: Path, folds: Sequence[str], options: ExportOptions) -> Plan:
    """The plan every fold's checkpoint holds, after loading each as an install will.

    Raises:
        FileNotFoundError: a fold without the checkpoint.
        ValueError: a checkpoint that does not load safely, or folds of different plans.
    """
    plan: Plan | None = None
    variant = options.variant or DEFAULT_VARIANT
    for fold in folds:
        path = fold_dir(work_dir, fold, options.configuration, variant) / options.checkpoint
        ckpt = read_checkpoint(path)
        if plan is not None and ckpt.plan != plan:
            raise ValueError(
                f"{path}: fold {fold} was trained with a different plan than fold {folds[0]}; "
                "export folds of one plan (-f)."
            )
        plan = ckpt.plan
    assert plan is not None  # folds is not empty
    return plan


def _dataset_json(plan: Plan) -> dict[str, Any]:
    """The raw dataset's ``dataset.json`` keys the model depends on (docs/dataset_format.md):
    inputs named and ordered as in training, labels and classes as it outputs them."""
    data: dict[str, Any] = {
        "channel_names": dict(plan.channel_names),
        "labels": dict(plan.labels),
        "numTraining": int(plan.case_counts.get("num_cases", 0)),
        "file_ending": ".nii.gz",
    }
    if plan.classes:
        data["classes"] = list(plan.classes)
    return data


def _model_files(work_dir: Path, folds: Sequence[str], options: ExportOptions) -> list[Path]:
    """Work-dir files to ship as they are, in zip order (checkpoints first)."""
    variant = options.variant or DEFAULT_VARIANT
    files = []
    for fold in folds:
        folder = fold_dir(work_dir, fold, options.configuration, variant)
        files.append(folder / options.checkpoint)
        files += [folder / extra for extra in FOLD_EXTRAS if (folder / extra).is_file()]
    plans = work_dir / PLANS_MEMBER
    if not plans.is_file():
        raise FileNotFoundError(
            f"{plans}: missing; a trained work dir holds the plan autojoint_plan wrote. Export "
            "from the work dir the folds were trained in."
        )
    files.append(plans)
    if (work_dir / FINGERPRINT_MEMBER).is_file():
        files.append(work_dir / FINGERPRINT_MEMBER)
    folders = dict.fromkeys(
        [
            work_dir,
            configuration_dir(work_dir, options.configuration),
            resolve_variant(work_dir, options.variant, options.configuration),
        ]
    )
    files += [f / name for f in folders for name in OPTIONAL_MODEL_FILES if (f / name).is_file()]
    return files


def export_model(work_dir: Path, output: Path, options: ExportOptions) -> ModelManifest:
    """Write the model zip ``output`` (atomically: a temp file beside it, then a rename;
    an existing ``output`` is replaced) and return its manifest.

    Raises:
        FileNotFoundError: no trained fold (or variant), or no ``plans.json``.
        ValueError: an unknown checkpoint name or variant, a checkpoint that does not
            load with ``weights_only=True``, or folds of different plans.
    """
    work_dir = Path(work_dir)
    variant = options.variant or DEFAULT_VARIANT
    folder = resolve_variant(work_dir, options.variant, options.configuration)
    folds = list(options.folds or ()) or available_folds(
        work_dir, options.configuration, options.checkpoint, variant
    )
    if not folds:
        raise FileNotFoundError(
            f"{folder / 'fold_*' / options.checkpoint}: none found; train a fold first "
            f"(autojoint_train FOLD -w {work_dir}) or pick another -chk/-c/--variant."
        )
    plan = _plan_of_folds(work_dir, folds, options)
    files = _model_files(work_dir, folds, options)
    created = datetime.now(UTC).replace(microsecond=0).isoformat()
    generated: dict[str, bytes] = {
        DATASET_MEMBER: _json_bytes(_dataset_json(plan)),
    }
    model = {
        "variant": variant,
        "configuration": options.configuration,
        "checkpoint": options.checkpoint,
        "folds": list(folds),
    }
    fingerprint = _read_fingerprint(work_dir / FINGERPRINT_MEMBER)
    summaries = {f: _read_summary(work_dir, f, options) for f in folds}
    card = build_model_card(
        plan,
        fingerprint=fingerprint,
        summaries=summaries,
        model=model,
        autojoint_version=__version__,
        created=created,
    )
    generated[MODEL_CARD_JSON] = _json_bytes(card.to_dict())
    generated[MODEL_CARD_MD] = render_model_card(card).encode("utf-8")
    hashes = {_relative(p, work_dir): sha256_of(p) for p in files}
    hashes.update({name: hashlib.sha256(data).hexdigest() for name, data in generated.items()})
    manifest = ModelManifest(
        autojoint_version=__version__,
        created=created,
        variant=variant,
        configuration=options.configuration,
        checkpoint=options.checkpoint,
        folds=tuple(folds),
        files=hashes,
    )
    _write_zip(output, work_dir, files, generated, manifest)
    logger.info(
        "exported variant %s (%s, %s, folds %s) from %s into %s",
        variant,
        options.configuration,
        options.checkpoint,
        ", ".join(folds),
        work_dir,
        output,
    )
    return manifest


def _json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=2, allow_nan=False) + "\n").encode("utf-8")


def _read_fingerprint(path: Path) -> Fingerprint | None:
    """The fingerprint for the card, or None (absent or unreadable: the card then omits
    what it says, and the log says why)."""
    if not path.is_file():
        return None
    try:
        return Fingerprint.load(path)
    except ValueError as err:
        logger.warning("model card without the training data's fingerprint: %s", err)
        return None


def _read_summary(work_dir: Path, fold: str, options: ExportOptions) -> dict[str, Any] | None:
    """A fold's final validation summary, or None (not validated, or unreadable)."""
    variant = options.variant or DEFAULT_VARIANT
    path = fold_dir(work_dir, fold, options.configuration, variant) / FOLD_EXTRAS[0]
    if not path.is_file():
        return None
    try:
        data = read_json(path)
    except ValueError as err:
        logger.warning("model card without fold %s's validation figures: %s", fold, err)
        return None
    return data if isinstance(data, dict) else None


def _write_zip(
    output: Path,
    work_dir: Path,
    files: Sequence[Path],
    generated: dict[str, bytes],
    manifest: ModelManifest,
) -> None:
    """Write the zip to a temp file beside ``output``, then rename it into place."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".zip.part", dir=output.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for path in files:
                zf.write(path, _relative(path, work_dir))
            for name, data in generated.items():
                zf.writestr(name, data)
            zf.writestr(MANIFEST_FILE, _json_bytes(manifest.to_dict()))
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
