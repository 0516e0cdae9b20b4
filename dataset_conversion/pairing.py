"""Pair image files with mask files by name, as most public lesion datasets ship them.

Datasets name a scan and its mask alike up to a suffix (``tr_im`` / ``tr_mask``,
``coronacases_001`` in two folders, ``P01.nii.gz`` / ``P01_seg.nii``); the pairing key is
the file name without its image extension, lower-cased, with one such suffix removed.
"""

from __future__ import annotations

import re
from pathlib import Path

from dataset_conversion.raw_writer import ConversionError

IMAGE_EXTENSIONS = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".jpg", ".jpeg", ".png")
_SUFFIX = re.compile(r"[_-](mask|msk|seg|label|labels|gt|im|img|image|ct|scan)$")


def strip_extension(name: str) -> str | None:
    """``name`` without its image extension, or None when it is not an image file."""
    low = name.lower()
    for ext in IMAGE_EXTENSIONS:
        if low.endswith(ext):
            return name[: -len(ext)]
    return None


def pairing_key(name: str) -> str | None:
    """Key that an image and its mask share (see module docstring); None for non-images."""
    stem = strip_extension(name)
    if stem is None:
        return None
    return _SUFFIX.sub("", stem.lower())


def list_images(folder: Path) -> dict[str, Path]:
    """``{key: path}`` of the image files in ``folder`` (hidden files skipped).

    Raises:
        ConversionError: missing folder, or two files with one key.
    """
    if not folder.is_dir():
        raise ConversionError(f"{folder}: not a folder.")
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        key = pairing_key(p.name)
        if key is None or p.name.startswith(".") or not p.is_file():
            continue
        if key in out:
            raise ConversionError(
                f"{folder}: {out[key].name} and {p.name} pair to the same case '{key}'."
            )
        out[key] = p
    return out


def pair_masks(images: dict[str, Path], masks_dir: Path | None) -> dict[str, Path | None]:
    """The mask of every image key (None when absent).

    Raises:
        ConversionError: a mask without an image (a naming mismatch would lose it silently).
    """
    masks = list_images(masks_dir) if masks_dir is not None else {}
    orphans = sorted(set(masks) - set(images))
    if orphans:
        raise ConversionError(
            f"{masks_dir}: masks {[masks[k].name for k in orphans[:5]]} match no image; "
            "name a mask like its image (an optional _mask/_seg suffix is allowed)."
        )
    return {k: masks.get(k) for k in images}


def safe_case_id(key: str, prefix: str = "") -> str:
    """A case id from a pairing key: characters other than ``[A-Za-z0-9_.-]`` become ``_``."""
    return prefix + re.sub(r"[^A-Za-z0-9_.-]", "_", key)
