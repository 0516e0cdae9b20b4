"""3DLSC-COVID (DeepSC-COVID, Wang et al., IEEE TMI 2021) -> autojoint raw dataset.

The paper describes 3D chest CTs of three classes (COVID-19, community-acquired pneumonia,
non-pneumonia) with fine 3D lesion masks and a scan-level diagnosis (docs/methods.md,
"References").
We read that description as this layout, one folder per class::

    ROOT/COVID-19/images/NAME.nii.gz     ROOT/COVID-19/masks/NAME.nii[.gz]   (or NAME_mask...)
    ROOT/CAP/images/...                  ROOT/CAP/masks/...
    ROOT/NP/images/...                   (non-pneumonia; masks optional)

Class folders are recognised by name (``covid``; ``cap``; ``np``, ``non-pneumonia``,
``normal``, ``healthy``; any case); a class folder without ``images/`` holds its scans
directly. Masks are paired by name (:mod:`dataset_conversion.pairing`); non-zero = lesion.
A scan without mask is classification-only, except that ``--empty-masks-for-np`` writes an
all-zero mask for non-pneumonia scans (they have no lesion by definition, which the
segmentation loss can then learn from). Case ids are ``<class>_<name>`` so equal file names
in two class folders stay apart.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from dataset_conversion.convert_medseg import remap_mask
from dataset_conversion.pairing import list_images, pair_masks, safe_case_id
from dataset_conversion.raw_writer import (
    ConversionError,
    ConvertedCase,
    add_common_arguments,
    clean_image,
    read_image,
    run_converter,
    snap_to_grid,
    to_hu_int16,
    to_uint8_label,
    write_raw_dataset,
)

CLASSES: tuple[str, ...] = ("COVID-19", "CAP", "non-pneumonia")
LABELS: dict[str, int] = {"background": 0, "lesion": 1}
_PREFIX = {"COVID-19": "covid", "CAP": "cap", "non-pneumonia": "np"}


def class_of_folder(name: str) -> str | None:
    """Diagnosis of a class folder name, or None for other folders."""
    low = name.lower().replace("_", "-").replace(" ", "-")
    if "covid" in low:
        return "COVID-19"
    if low in ("np", "non-pneumonia", "nonpneumonia", "normal", "healthy", "non-covid-np"):
        return "non-pneumonia"
    if low == "cap" or low.startswith("cap-") or "community" in low:
        return "CAP"
    return None


def find_cases(root: Path) -> list[tuple[str, str, Path, Path | None]]:
    """``(case_id, diagnosis, image, mask or None)`` over every class folder.

    Raises:
        ConversionError: no class folder, an empty one, or a mask without its scan.
    """
    out = []
    for folder in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        diagnosis = class_of_folder(folder.name)
        if diagnosis is None:
            continue
        img_dir = folder / "images" if (folder / "images").is_dir() else folder
        mask_dir = next(
            (folder / n for n in ("masks", "labels", "mask") if (folder / n).is_dir()), None
        )
        images = list_images(img_dir)
        if not images:
            raise ConversionError(f"{img_dir}: no scans (.nii.gz, .nii, .mha, .nrrd).")
        masks = pair_masks(images, mask_dir)
        for key, path in images.items():
            out.append((safe_case_id(key, _PREFIX[diagnosis] + "_"), diagnosis, path, masks[key]))
    if not out:
        raise ConversionError(
            f"{root}: no class folder (COVID-19, CAP, NP) found; see the layout in --help."
        )
    return out


def _cases(
    rows: list[tuple[str, str, Path, Path | None]], empty_masks_for_np: bool
) -> Iterator[ConvertedCase]:
    for case_id, diagnosis, path, mask_path in rows:
        image = clean_image(to_hu_int16(read_image(path)))
        label = None
        if mask_path is not None:
            raw = remap_mask(read_image(mask_path), {}, True)
            label = snap_to_grid(to_uint8_label(raw, str(mask_path), 2), image)
        elif empty_masks_for_np and diagnosis == "non-pneumonia":
            label = sitk.GetImageFromArray(np.zeros(image.GetSize()[::-1], np.uint8))
            label.CopyInformation(image)
        yield ConvertedCase(
            case_id, (image,), label, diagnosis, str(path), label_source=str(mask_path or "")
        )


def convert_3dlsc(
    root: Path, out_dir: Path, *, empty_masks_for_np: bool = False, overwrite: bool = False
) -> dict[str, int]:
    """Convert the 3DLSC-COVID class folders under ``root``.

    Raises:
        ConversionError: see :func:`find_cases`; a mask off its scan's grid.
    """
    rows = find_cases(Path(root))
    return write_raw_dataset(
        out_dir,
        _cases(rows, empty_masks_for_np),
        labels=LABELS,
        classes=CLASSES,
        name="3DLSC-COVID",
        description="3DLSC-COVID (DeepSC-COVID, Wang et al., IEEE TMI 2021): COVID-19 / CAP / "
        "non-pneumonia chest CTs with lesion masks"
        + (
            "; all-zero masks written for non-pneumonia scans without one"
            if empty_masks_for_np
            else ""
        ),
        num_cases=len(rows),
        overwrite=overwrite,
    )


def main(argv: list[str] | None = None) -> int:
    """``autojoint_convert_3dlsc``: see ``--help``."""
    parser = argparse.ArgumentParser(
        prog="autojoint_convert_3dlsc",
        description="Convert 3DLSC-COVID (class folders COVID-19/, CAP/, NP/, each with "
        "images/ and optional masks/) into an autojoint raw dataset with diagnoses.",
    )
    parser.add_argument("-i", "--input", required=True, type=Path, help="3DLSC-COVID folder")
    add_common_arguments(parser)
    parser.add_argument(
        "--empty-masks-for-np",
        action="store_true",
        help="write an all-zero lesion mask for non-pneumonia scans without a mask",
    )
    args = parser.parse_args(argv)
    return run_converter(
        parser,
        lambda: convert_3dlsc(
            args.input,
            args.output,
            empty_masks_for_np=args.empty_masks_for_np,
            overwrite=args.overwrite,
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
