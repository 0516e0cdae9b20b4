"""An autojoint raw dataset as an nnU-Net v2 raw dataset, and nnU-Net's folder variables.

Our raw layout is nnU-Net's plus a diagnoses CSV and a ``classes`` list, so the conversion
only links files: every case WITH a mask (nnU-Net trains segmentation only and needs one per
training image) gets its channel files and mask linked under ``DatasetNNN_NAME``, and
``dataset.json`` keeps nnU-Net's keys. Links, not copies: both tools then read the very same
voxels, and a 60-case benchmark costs no disk.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from autojoint.io.dataset import load_raw_dataset
from autojoint.io.files import read_json, write_json

SPLITS_FINAL = "splits_final.json"
"""nnU-Net's split file in ``nnUNet_preprocessed/DatasetNNN_NAME``; its trainer uses the
folds listed there (``nnUNetTrainer.do_split``) and only creates its own when it is absent."""
NNUNET_KEYS = ("channel_names", "labels", "file_ending", "name", "description")
"""dataset.json keys nnU-Net reads; ``numTraining`` is recounted, ``classes`` dropped."""


@dataclass(frozen=True)
class NnunetFolders:
    """nnU-Net's three folder variables for one benchmark output folder and seed.

    nnU-Net has no seed option and names its model folders by dataset, trainer, plans and
    fold only, so each repetition gets its own ``results`` root.
    """

    raw: Path
    preprocessed: Path
    results: Path

    def env(self) -> dict[str, str]:
        """The environment variables nnU-Net reads (added to ``os.environ`` by the caller)."""
        return {
            "nnUNet_raw": str(self.raw),
            "nnUNet_preprocessed": str(self.preprocessed),
            "nnUNet_results": str(self.results),
        }

    def model(self, dataset: str, configuration: str, plans: str = "nnUNetPlans") -> Path:
        """The folder nnU-Net's default trainer writes (and its predictor reads) for one
        dataset, plans identifier and configuration: ``results/DATASET/TRAINER__PLANS__CONF``."""
        return self.results / dataset / f"nnUNetTrainer__{plans}__{configuration}"


def nnunet_folders(root: Path, repetition: int) -> NnunetFolders:
    """``ROOT/raw``, ``ROOT/preprocessed`` and ``ROOT/results_seedN``."""
    return NnunetFolders(root / "raw", root / "preprocessed", root / f"results_seed{repetition}")


def dataset_name(dataset_id: int, name: str) -> str:
    """``Dataset501_InfNet``: nnU-Net wants three digits and a name without separators.

    Raises:
        ValueError: an id outside 1..999.
    """
    if not 1 <= dataset_id <= 999:
        raise ValueError(f"nnU-Net dataset ids are 1..999, got {dataset_id}")
    clean = re.sub(r"[^A-Za-z0-9]", "", name) or "Autojoint"
    return f"Dataset{dataset_id:03d}_{clean}"


def _link(target: Path, link: Path) -> None:
    """A relative symlink ``link -> target``, replaced if it points elsewhere."""
    rel = os.path.relpath(target.resolve(), link.parent.resolve())
    if link.is_symlink() and os.readlink(link) == rel:
        return
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(rel)


def to_nnunet_raw(raw: Path, nnunet_raw: Path, dataset_id: int, name: str) -> Path:
    """Link ``raw``'s labelled training cases (and its ``imagesTs``) into nnU-Net's layout.

    Returns the dataset folder ``NNUNET_RAW/DatasetNNN_NAME``. Rerunning is a no-op; a case
    removed from ``raw`` since is removed here too.

    Raises:
        autojoint.io.dataset.DatasetError: ``raw`` is not a valid autojoint raw dataset.
        ValueError: no case has a mask (nnU-Net has nothing to train on).
    """
    dataset = load_raw_dataset(raw)
    labelled = [c for c in dataset.cases if c.label_path is not None]
    if not labelled:
        raise ValueError(f"{raw}: no case has a mask in labelsTr/, nnU-Net cannot train on it")
    out = nnunet_raw / dataset_name(dataset_id, name)
    wanted: dict[Path, Path] = {}
    for case in labelled:
        for path in case.image_paths:
            wanted[out / "imagesTr" / path.name] = path
        assert case.label_path is not None
        wanted[out / "labelsTr" / case.label_path.name] = case.label_path
    test_dir = raw / "imagesTs"
    if test_dir.is_dir():
        for path in sorted(test_dir.iterdir()):
            wanted[out / "imagesTs" / path.name] = path
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        folder = out / sub
        if folder.is_symlink():  # a hand-made link to a whole folder: never write through it
            folder.unlink()
        elif folder.is_dir():
            for stale in folder.iterdir():
                if stale not in wanted:
                    stale.unlink()
    for link, target in wanted.items():
        link.parent.mkdir(parents=True, exist_ok=True)
        _link(target, link)
    meta = read_json(raw / "dataset.json")
    nn_meta = {k: meta[k] for k in NNUNET_KEYS if k in meta}
    nn_meta["numTraining"] = len(labelled)
    write_json(nn_meta, out / "dataset.json")
    return out


def write_nnunet_splits(
    splits: Sequence[Mapping[str, Sequence[str]]], preprocessed_dataset: Path
) -> Path:
    """Write ``splits`` as nnU-Net's ``splits_final.json`` in ``preprocessed_dataset``.

    Both tools then cross-validate on the very same cases: nnU-Net's format is autojoint's
    ``splits.json`` (a list, one ``{"train": [...], "val": [...]}`` per fold), so the file
    is the same lists, sorted, written after nnU-Net's preprocessing made the folder and
    before its first training would create a split of its own.

    Returns:
        The written file.

    Raises:
        ValueError: no fold, a case both in a fold's train and val lists, or folds that do
            not cover the same cases (not one cross-validation).
    """
    if not splits:
        raise ValueError("no folds to write")
    folds = [{"train": sorted(s["train"]), "val": sorted(s["val"])} for s in splits]
    everyone = set(folds[0]["train"]) | set(folds[0]["val"])
    for i, fold in enumerate(folds):
        both = sorted(set(fold["train"]) & set(fold["val"]))
        if both:
            raise ValueError(f"fold {i}: {both[:5]} are both training and validation cases")
        if set(fold["train"]) | set(fold["val"]) != everyone:
            raise ValueError(f"fold {i} covers other cases than fold 0")
    path = Path(preprocessed_dataset) / SPLITS_FINAL
    write_json(folds, path)
    return path
